"""Worker-side stages of PaddleX's table_recognition pipeline (see runner.py)."""
