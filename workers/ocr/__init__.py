"""Worker-side OCR: detection, line orientation, recognition, PDF pages, drawing.

Each module follows PaddleOCR/PaddleX's own algorithms step by step (same
resizing, thresholds, contour and crop maths, OpenCV calls), because the
point is to return PaddleX's answers, faster; where pxserve deliberately
differs (the orientation stage), the module says so and why.
"""
