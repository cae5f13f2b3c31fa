"""The OCR runner: the worker-side stages of PaddleX's OCR pipeline.

Its stages (``STAGES`` at the bottom, each with its parameters' type; see
shared/stages.py, and shared/messages.py for fan-out):

* ``image`` -- decode, detect, crop the lines; read them here, or fan them
  out to every worker as ``lines`` tasks and finish in ``assemble``.
* ``pdf`` -- open the file, check it, fan out one ``page`` task per page,
  finish in ``document``.
* ``page`` -- render one page, then as ``image``.
* ``lines`` -- orientation + recognition of a group of line crops.
* ``assemble`` / ``document`` -- put the children's answers together.

Another pipeline uses OCR as a sub-pipeline by fanning out to these stages
(``STAGES["image"].task(OcrParams(...), payload, context.stage_name)``);
the runner's own fan-outs carry its namespace, so two OCR sub-pipelines
with different models never read each other's lines.

Detections of one batch that share an input size run as one detector call,
up to ``DETECTION_BATCH_PIXELS`` (small photos batch; pages of a PDF run one
at a time, so a worker's memory does not grow with the batch).
Every line is padded to the width PaddleX would pad it to (see
``lines.padded_widths``: that width changes what the recognizer reads), and
then all the lines of one batch -- from every
request and page in it -- that share a padded width are recognized
together, up to ``lines_per_call`` at a time. A line's text therefore
never depends on which other requests were in flight.

On CPU ``lines_per_call`` is 1: measured on this project's 2-core machine,
one line per call is faster than any batch for the recognizer (ONNX
Runtime, 1700 px lines: 192 ms a line alone, 308 ms a line in sixes;
Paddle: equal), while on a GPU batching is what pays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict

from pxserve.shared.errors import RequestError
from pxserve.shared.messages import PARENT_PAYLOAD, FanOut, Outcome, Task
from pxserve.shared.pipelines import LoadedModel, RunnerContext
from pxserve.shared.pipelines.ocr import DETECTION, DETECTION_KEYS, ORIENTATION, RECOGNITION, Ocr, OcrParams
from pxserve.shared.stages import Stage, StageError, StageTable
from pxserve.workers import pdf_pages as pdf
from pxserve.workers import pdf_text, tiff_pages
from pxserve.workers.doc_preprocessor import preprocessor_of
from pxserve.workers.ocr import curved, detection, lines, visualize
from pxserve.workers.ocr.detection import DetectionParams
from pxserve.workers.page_images import decode_bgr, encode_jpeg

log = logging.getLogger("pxserve.ocr")

# Fan a page's lines out to other workers only when it has at least this
# many: below it the extra hops cost more than they save.
FAN_OUT_MIN_LINES = 4
# The crops travel back through the response ring (a record at most half
# of it); a page with more line pixels than this is read where it is.
FAN_OUT_MAX_BYTES = 4 << 20
GPU_LINES_PER_CALL = 32
# Detector input pixels per call: one Letter or A4 page (1248x1600), or a
# few photos. The detector needs about 170 MB per million pixels on top of
# a worker's ~1 GB (see detection.py); an A3 page (4 MP) runs alone.
DETECTION_BATCH_PIXELS = 2_500_000


@dataclass(frozen=True)
class OcrDefaults:
    """What a request leaves unset, from the pipeline config (see shared/pipelines/ocr.py)."""

    det: DetectionParams = field(default_factory=DetectionParams)
    text_type: str = "general"  # "seal": polygons, straightened before they are read
    use_doc_preprocessor: bool = False
    use_textline_orientation: bool = True
    text_rec_score_thresh: float = 0.0
    return_word_box: bool = False
    visualize: bool = False
    rec_batch_size: int = 6
    orientation_batch_size: int = 6
    max_pdf_pages: int = 10
    max_pixels: int = 64_000_000
    max_side: int = 16_384
    max_stream_pages: int = 1000
    use_pdf_text_layer: bool = False  # PaddleX reads every page by OCR; a request may ask otherwise


def defaults_of(pipeline: Ocr) -> OcrDefaults:
    """What the pipeline's config says for whatever a request leaves unset."""
    extra = pipeline.config.model_extra or {}
    serving = pipeline.config.Serving
    setting = pipeline.module_setting
    base = DetectionParams()
    det = {k: setting(DETECTION, k, getattr(base, k)) for k in DETECTION_KEYS}
    return OcrDefaults(
        det=DetectionParams(**det),
        text_type=str(extra.get("text_type", "general")),
        use_doc_preprocessor=bool(extra.get("use_doc_preprocessor", False)),
        use_textline_orientation=bool(extra.get("use_textline_orientation", True))
        and pipeline.has_orientation,
        text_rec_score_thresh=float(setting(RECOGNITION, "score_thresh", 0.0)),
        visualize=serving.visualize,
        rec_batch_size=int(setting(RECOGNITION, "batch_size", 6)),
        orientation_batch_size=int(setting(ORIENTATION, "batch_size", 6)),
        max_pdf_pages=pipeline.max_pdf_pages,
        max_pixels=serving.max_pixels,
        max_side=serving.max_side,
        max_stream_pages=serving.max_stream_pages,
        use_pdf_text_layer=bool(extra.get("use_pdf_text_layer", False)),
    )


@dataclass(frozen=True)
class Options:
    """One request's settings, as the front resolved them (defaults for warm-up tasks)."""

    det: DetectionParams
    use_textline_orientation: bool
    text_rec_score_thresh: float
    return_word_box: bool
    visualize: bool

    @classmethod
    def of(cls, params: OcrParams, defaults: OcrDefaults) -> Options:
        det = {**defaults.det.__dict__, **params.det.model_dump(exclude_none=True)}

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return cls(
            det=DetectionParams(**det),
            use_textline_orientation=bool(pick(params.orientation, defaults.use_textline_orientation)),
            text_rec_score_thresh=float(pick(params.score_thresh, defaults.text_rec_score_thresh)),
            return_word_box=bool(pick(params.word_box, defaults.return_word_box)),
            visualize=bool(pick(params.visualize, defaults.visualize)),
        )


class LinesParams(BaseModel):
    """A group of one page's line crops (the payload: their pixels, one after another)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[int]  # each line's index on its page
    shapes: list[tuple[int, int]]  # (height, width) of each crop
    widths: list[int]  # the width PaddleX pads each line to
    orientation: bool
    word_box: bool = False


class AssembleParams(OcrParams):
    """A page whose lines were read elsewhere: its boxes, and the groups' answers."""

    polys: list[list[list[int]]]
    doc_preprocessor_res: dict[str, Any] | None = None  # the page was turned upright first
    data_info: dict[str, Any] | None = None  # set for a whole-image request
    children: list[dict[str, Any]] = []  # LinesAnswer of each group, filled in by the engine


@dataclass
class Page:
    """One image or PDF page going through detection."""

    slot: int  # index of its task in the batch
    task: Task
    image: np.ndarray  # BGR
    options: Options
    data_info: dict[str, Any] | None  # set for a whole-image request (wrap the result)
    params: OcrParams  # as the task asked (handed on to a fan-out's continuation)
    doc: dict[str, Any] | None = None  # doc_preprocessor_res, when the page was turned upright
    polys: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)


@dataclass
class LineGroup:
    """Crops to read, and where the answers go."""

    slot: int
    crops: list[np.ndarray]
    ids: list[int]
    orientation: bool
    widths: list[int] = field(default_factory=list)  # padded width per line (PaddleX's)
    word_box: bool = False
    words: list[list[Any]] = field(default_factory=list)  # per line: [word, start, end] (0..1)
    texts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    angles: list[int] = field(default_factory=list)
    owner: int = 0  # the task's request_id: not read once that is cancelled


class OcrRunner:
    def __init__(self, models: dict[str, LoadedModel], pipeline: Ocr, context: RunnerContext) -> None:
        self.defaults = defaults = defaults_of(pipeline)
        self.stage_name = context.stage_name  # our namespace, for the tasks we fan out
        self.workers = context.workers
        self.beat = context.beat
        self.cancelled = context.cancelled
        self.detector = models["TextDetection"].backend
        recognizer = models["TextRecognition"]
        self.recognizer = recognizer.backend
        self.lines_per_call = 1 if recognizer.device.kind == "cpu" else GPU_LINES_PER_CALL
        decode = recognizer.model.post_process("CTCLabelDecode")
        characters = [str(c) for c in decode.get("character_dict") or []]
        if not characters:
            raise ValueError(f"{recognizer.model.path}/inference.yml has no CTCLabelDecode.character_dict")
        self.decoder = lines.CtcDecoder(characters, bool(decode.get("use_space_char", True)))
        shape = _transform_arg(recognizer.model.transform_ops, "RecResizeImg", "image_shape") or [3, 48, 320]
        self.rec_height, self.rec_width = int(shape[1]), int(shape[2])
        classifier = models.get("TextLineOrientation")
        self.classifier = classifier.backend if classifier else None
        self.cls_height, self.cls_width, self.cls_norm, self.flip_index = 48, 192, lines.Normalization(), 1
        if classifier is not None:
            size = _transform_arg(classifier.model.transform_ops, "ResizeImage", "size")
            if size:
                self.cls_width, self.cls_height = int(size[0]), int(size[1])
            norm = _transform_op(classifier.model.transform_ops, "NormalizeImage")
            if norm:
                self.cls_norm = lines.Normalization(
                    float(parse_scale(norm.get("scale", 1 / 255))),
                    tuple(norm.get("mean", (0.5,) * 3)),
                    tuple(norm.get("std", (0.5,) * 3)),
                )
            labels = [str(x) for x in classifier.model.post_process("Topk").get("label_list") or []]
            self.flip_index = next((i for i, label in enumerate(labels) if "180" in label), 1)
        self.page_limits = pdf.PageLimits(defaults.max_pixels, defaults.max_side, defaults.max_stream_pages)
        self.preprocessor = preprocessor_of(context)  # SubPipelines.DocPreprocessor, if configured
        self.layer_check = pdf_text.LayerCheck(self.read_lines)  # usePdfTextLayer

    # -- the batch ---------------------------------------------------------
    def run(self, tasks: list[Task]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(tasks)
        pages: list[Page] = []
        groups: list[LineGroup] = []
        for slot, task in enumerate(tasks):
            try:
                stage = STAGES[task.stage]
                item = stage.handler(self, slot, task, stage.read(task))
            except RequestError as exc:  # the file cannot be read (PdfError among them)
                item = Outcome.failure(task.request_id, exc.status, exc.message)
            except StageError as exc:
                item = Outcome.failure(task.request_id, 500, f"OCR: {exc}")
            if isinstance(item, Page):
                pages.append(item)
            elif isinstance(item, LineGroup):
                groups.append(item)
            elif isinstance(item, dict):
                outcomes[slot] = Outcome.success(task.request_id, item)
            else:
                outcomes[slot] = item
        self._detect(pages)
        fan_out = len(pages) < self.workers
        local: list[tuple[Page, LineGroup]] = []
        for page in pages:
            if self.cancelled(page.task.request_id):
                outcomes[page.slot] = Outcome.dropped(page.task.request_id)
                continue
            plan = self._plan_fan_out(page) if fan_out else None
            if plan is not None:
                outcomes[page.slot] = Outcome.fan_out(page.task.request_id, plan)
            else:
                ids = list(range(len(page.crops)))
                orientation = page.options.use_textline_orientation
                group = LineGroup(
                    page.slot,
                    page.crops,
                    ids,
                    orientation,
                    self._widths(page.crops),
                    page.options.return_word_box,
                    owner=page.task.request_id,
                )
                local.append((page, group))
        for group in groups:
            group.owner = tasks[group.slot].request_id
        self._read([g for _, g in local] + groups)
        for page, group in local:
            if self.cancelled(page.task.request_id):
                outcomes[page.slot] = Outcome.dropped(page.task.request_id)
                continue
            result = self._page_result(
                page.options, page.polys, [group], page.image, page.data_info, page.doc,
                page.params.text_layer_res,
            )  # fmt: skip
            outcomes[page.slot] = Outcome.success(page.task.request_id, result)
        for group in groups:
            if self.cancelled(group.owner):
                outcomes[group.slot] = Outcome.dropped(group.owner)
                continue
            answer = {
                "ids": group.ids,
                "texts": group.texts,
                "scores": group.scores,
                "angles": group.angles,
                "words": group.words,
            }
            outcomes[group.slot] = Outcome.success(tasks[group.slot].request_id, answer)
        return [o for o in outcomes if o is not None]

    def lines_task(self, crops: list[np.ndarray], orientation: bool = False) -> Task:
        """For another pipeline to fan out to: ``crops`` read as text lines, no detection. Its
        answer is ``{"ids", "texts", "scores", ...}``, in the crops' order."""
        params = LinesParams(
            ids=list(range(len(crops))),
            shapes=[c.shape[:2] for c in crops],
            widths=self._widths(crops),
            orientation=orientation,
        )
        payload = b"".join(np.ascontiguousarray(c).tobytes() for c in crops)
        return STAGES["lines"].task(params, payload, self.stage_name)

    def read_images(self, images: list[np.ndarray], params: OcrParams) -> list[dict[str, Any]]:
        """In-process, for another pipeline: each image's ``prunedResult``, read here (never
        fanned out), with the config's settings where ``params`` leaves them unset."""
        options = Options.of(params, self.defaults)
        pages = [Page(i, Task(0, {}, b""), image, options, None, params) for i, image in enumerate(images)]
        self._detect(pages)
        groups = [
            LineGroup(
                p.slot,
                p.crops,
                list(range(len(p.crops))),
                options.use_textline_orientation,
                self._widths(p.crops),
            )
            for p in pages
        ]
        self._read(groups)
        return [
            self._page_result(options, p.polys, [g], None, None)["prunedResult"]
            for p, g in zip(pages, groups, strict=True)
        ]

    def read_lines(self, crops: list[np.ndarray]) -> list[str]:
        """In-process, for another pipeline: ``crops`` read as upright text lines (no detection,
        no orientation), in their order."""
        group = LineGroup(0, crops, list(range(len(crops))), False, self._widths(crops))
        self._read([group])
        return group.texts

    def warm_up(self) -> None:
        """Run the recognizer (and classifier) once on narrow and wide lines."""
        crops = [np.full((32, w, 3), 255, np.uint8) for w in (64, 320, 1200)]
        self._read([LineGroup(0, crops, [0, 1, 2], self.classifier is not None, self._widths(crops))])

    def _widths(self, crops: list[np.ndarray]) -> list[int]:
        return lines.padded_widths(crops, self.defaults.rec_batch_size, self.rec_height, self.rec_width)

    # -- inputs --------------------------------------------------------------
    def image_page(self, slot: int, task: Task, params: OcrParams) -> Page:
        image = decode_bgr(task.image)
        height, width = image.shape[:2]
        info = {"width": width, "height": height, "type": "image"}
        return self._upright(Page(slot, task, image, Options.of(params, self.defaults), info, params))

    def pdf_page(self, slot: int, task: Task, params: OcrParams) -> Page | dict[str, Any]:
        image = pdf.render_one(task.image, int(params.page or 0), self.page_limits)
        page = self._upright(Page(slot, task, image, Options.of(params, self.defaults), None, params))
        asked = self.defaults.use_pdf_text_layer if params.text_layer is None else params.text_layer
        if not asked or tiff_pages.is_tiff(task.image):
            return page
        if page.doc is not None and page.doc.get("angle", 0) not in (0, -1):
            page.params = params.model_copy(
                update={"text_layer_res": {"used": False, "reason": "the page was turned upright first"}}
            )
            return page
        height, width = image.shape[:2]
        text = pdf_text.read_page_text(task.image, int(params.page or 0), (width, height))
        if text.usable:
            text.reason = self.layer_check.reason_against(text, image)
            self.beat()
        if not text.usable:
            reason = text.reason or "it has no text layer"
            page.params = params.model_copy(update={"text_layer_res": {"used": False, "reason": reason}})
            return page
        return self._layer_result(page, text)

    def _layer_result(self, page: Page, text: pdf_text.PageText) -> dict[str, Any]:
        """A PDF page's ``ocrResults`` entry from its own text, as OCR's would be."""
        options = page.options
        layer = pdf_text.as_ocr_result(text.lines, options.det.as_result())
        pruned: dict[str, Any] = {
            "model_settings": {
                "use_doc_preprocessor": page.doc is not None,
                "use_textline_orientation": options.use_textline_orientation,
            },
        }
        if page.doc is not None:
            pruned["doc_preprocessor_res"] = page.doc
        pruned |= {k: layer[k] for k in ("dt_polys", "text_det_params")}
        pruned["text_type"] = self.defaults.text_type
        if text.lines:
            pruned["textline_orientation_angles"] = layer["textline_orientation_angles"]
        pruned |= {
            "text_rec_score_thresh": options.text_rec_score_thresh,
            "return_word_box": options.return_word_box,
            **{k: layer[k] for k in ("rec_texts", "rec_scores", "rec_polys", "rec_boxes")},
        }
        if options.return_word_box:
            pruned |= {k: layer[k] for k in ("text_word", "text_word_region")}
        pruned["text_layer_res"] = {"used": True, "reason": ""}
        result = {"prunedResult": pruned, "ocrImage": None, "docPreprocessingImage": None, "inputImage": None}
        if options.visualize:
            rgb = visualize.bgr_to_image(page.image)
            drawn = visualize.draw_ocr(rgb, pruned["rec_polys"], pruned["rec_texts"])
            result["ocrImage"] = visualize.to_jpeg_base64(drawn)
            result["inputImage"] = visualize.to_jpeg_base64(rgb)
        return result

    def _upright(self, page: Page) -> Page:
        """The page turned upright first, when the request (or the config) asks for it."""
        if self.preprocessor is None:
            return page
        orientation = self.preprocessor.resolve(
            page.params.doc_orientation, page.params.doc_unwarping, self.defaults.use_doc_preprocessor
        )
        if orientation is None:
            return page
        done = self.preprocessor.preprocess([page.image], orientation)[0]
        page.image, page.doc = done.image, done.result()
        return page

    def split_pdf(self, slot: int, task: Task, params: OcrParams) -> Outcome:
        """Check the whole file, then one ``page`` task per page for any worker."""
        max_pages = params.max_pages or self.defaults.max_pdf_pages
        return pdf.split_by_stages(task, params, STAGES, self.stage_name, max_pages, self.page_limits)

    def line_group(self, slot: int, task: Task, params: LinesParams) -> LineGroup:
        crops, offset = [], 0
        payload = task.image
        for height, width in params.shapes:
            size = height * width * 3
            crops.append(np.frombuffer(payload[offset : offset + size], np.uint8).reshape(height, width, 3))
            offset += size
        return LineGroup(slot, crops, params.ids, params.orientation, params.widths, params.word_box)

    # -- detection -----------------------------------------------------------
    def _detect(self, pages: list[Page]) -> None:
        """Detect each page's lines and crop them; pages abandoned meanwhile are skipped."""
        shapes = [detection.resized_shape(*p.image.shape[:2], p.options.det) for p in pages]
        for group in detection.batch_for_detection(shapes, DETECTION_BATCH_PIXELS):
            group = [i for i in group if not self.cancelled(pages[i].task.request_id)]
            if not group:
                continue
            inputs = [detection.preprocess(pages[i].image, pages[i].options.det) for i in group]
            maps = self.detector.infer(np.stack(inputs))
            del inputs
            self.beat()
            for row, i in enumerate(group):
                page = pages[i]
                height, width = page.image.shape[:2]
                if self.defaults.text_type == "seal":
                    found = detection.polygons_from_map(maps[row, 0], height, width, page.options.det)
                    page.polys = detection.sort_polygons(found)
                    page.crops = [curved.crop(page.image, poly) for poly in page.polys]
                else:
                    boxes = detection.boxes_from_map(maps[row, 0], height, width, page.options.det)
                    page.polys = detection.sort_boxes(boxes)
                    page.crops = [lines.crop_min_area(page.image, box) for box in page.polys]

    def _plan_fan_out(self, page: Page) -> FanOut | None:
        """Split the page's lines over the workers, balanced by padded width.

        Each line carries the width PaddleX would pad it to, so any split
        reads the same text; the largest lines go first to the least loaded.
        """
        if len(page.crops) < FAN_OUT_MIN_LINES or sum(c.nbytes for c in page.crops) > FAN_OUT_MAX_BYTES:
            return None
        widths = self._widths(page.crops)
        parts = min(self.workers, len(page.crops))
        loads = [0] * parts
        assigned: list[list[int]] = [[] for _ in range(parts)]
        for i in sorted(range(len(page.crops)), key=lambda i: -widths[i]):
            part = loads.index(min(loads))
            loads[part] += widths[i]
            assigned[part].append(i)
        children = []
        for ids in assigned:
            crops = [page.crops[i] for i in ids]
            params = LinesParams(
                ids=ids,
                shapes=[c.shape[:2] for c in crops],
                widths=[widths[i] for i in ids],
                orientation=page.options.use_textline_orientation,
                word_box=page.options.return_word_box,
            )
            children.append(
                STAGES["lines"].task(params, b"".join(c.tobytes() for c in crops), self.stage_name)
            )
        then = AssembleParams(
            **page.params.model_dump(),
            polys=[p.tolist() for p in page.polys],
            doc_preprocessor_res=page.doc,
            data_info=page.data_info,
        )
        if not page.options.visualize:
            source: bytes = b""
        elif page.data_info is not None and page.doc is None:
            source = PARENT_PAYLOAD  # an image request: its own file
        else:
            source = encode_jpeg(page.image)  # a PDF page: the page as rendered
        return FanOut(children, STAGES["assemble"].task(then, source, self.stage_name))

    # -- orientation and recognition -------------------------------------------
    def _read(self, groups: list[LineGroup]) -> None:
        """Orientation, then recognition, of every line of every group, pooled.

        Lines of a task abandoned meanwhile are not read (their text stays
        empty; the task is answered as dropped).
        """
        entries = [(g, k) for g in groups for k in range(len(g.crops)) if not self.cancelled(g.owner)]
        if not entries:
            for group in groups:  # all abandoned: nothing to read, keep the lists aligned
                group.texts, group.scores, group.angles = (
                    [""] * len(group.crops),
                    [0.0] * len(group.crops),
                    [],
                )
            return
        crops = [g.crops[k] for g, k in entries]
        angles = [-1] * len(crops)
        wanted = [i for i, (g, _) in enumerate(entries) if g.orientation and self.classifier is not None]
        if wanted:
            flips = self._classify([crops[i] for i in wanted])
            for i, flip in zip(wanted, flips, strict=True):
                angles[i] = 180 if flip else 0
                if flip:
                    crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
        widths = [g.widths[k] for g, k in entries]
        texts: list[lines.Decoded | None] = [None] * len(crops)
        by_width: dict[int, list[int]] = {}
        for i, width in enumerate(widths):
            by_width.setdefault(width, []).append(i)
        for width, members in sorted(by_width.items()):
            for start in range(0, len(members), self.lines_per_call):
                chunk = [
                    i
                    for i in members[start : start + self.lines_per_call]
                    if not self.cancelled(entries[i][0].owner)
                ]
                if not chunk:
                    continue
                batch = lines.recognition_input(
                    [crops[i] for i in chunk], width, self.rec_height, self.rec_width
                )
                probabilities = self.recognizer.infer(batch)
                self.beat()
                for i, decoded in zip(chunk, self.decoder(probabilities), strict=True):
                    texts[i] = decoded
        for (group, _), decoded, angle, width, crop in zip(
            entries, texts, angles, widths, crops, strict=True
        ):
            if decoded is None:  # its task was abandoned while the others were read
                decoded = lines.Decoded("", 0.0, [], 1)
            group.texts.append(decoded.text)
            group.scores.append(decoded.score)
            group.angles.append(angle)
            if group.word_box:
                line_width = lines.content_width(crop, self.rec_height, self.rec_width)
                group.words.append([list(w) for w in lines.words(decoded, width, line_width)])

    def _classify(self, crops: list[np.ndarray]) -> list[bool]:
        assert self.classifier is not None
        windows, owners = [], []
        for i, crop in enumerate(crops):
            for window in lines.orientation_windows(crop, self.cls_height, self.cls_width, self.cls_norm):
                windows.append(window)
                owners.append(i)
        size = max(self.defaults.orientation_batch_size, 1)
        probabilities = np.concatenate(
            [self.classifier.infer(np.stack(windows[s : s + size])) for s in range(0, len(windows), size)]
        )
        return lines.flip_decisions(probabilities, owners, len(crops), self.flip_index)

    # -- results ---------------------------------------------------------------
    def assemble(self, slot: int, task: Task, params: AssembleParams) -> dict[str, Any]:
        options = Options.of(params, self.defaults)
        polys = [np.asarray(p, dtype=np.int32) for p in params.polys]
        groups = [
            LineGroup(
                0,
                [],
                c["ids"],
                options.use_textline_orientation,
                texts=c["texts"],
                scores=c["scores"],
                angles=c["angles"],
                words=c.get("words") or [],
            )
            for c in params.children
        ]
        image = decode_bgr(task.image) if options.visualize and len(task.image) else None
        doc, note = params.doc_preprocessor_res, params.text_layer_res
        return self._page_result(options, polys, groups, image, params.data_info, doc, note)

    def document(self, slot: int, task: Task, params: pdf.DocumentParams) -> dict[str, Any]:
        return {"ocrResults": params.children, "dataInfo": params.data_info}

    def _page_result(
        self,
        options: Options,
        polys: list[np.ndarray],
        groups: list[LineGroup],
        image: np.ndarray | None,
        data_info: dict[str, Any] | None,
        doc: dict[str, Any] | None = None,
        text_layer_res: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One ``ocrResults`` entry (wrapped with ``dataInfo`` for an image request)."""
        count = len(polys)
        texts, scores, angles = [""] * count, [0.0] * count, [-1] * count
        words: list[list[Any]] = [[] for _ in range(count)]
        for group in groups:
            for j, i in enumerate(group.ids):
                texts[i], scores[i], angles[i] = group.texts[j], group.scores[j], group.angles[j]
                if j < len(group.words):
                    words[i] = group.words[j]
        keep = [i for i in range(count) if scores[i] >= options.text_rec_score_thresh]
        rec_polys = [polys[i] for i in keep]
        pruned: dict[str, Any] = {
            "model_settings": {
                "use_doc_preprocessor": doc is not None,
                "use_textline_orientation": options.use_textline_orientation,
            },
        }
        if doc is not None:
            pruned["doc_preprocessor_res"] = doc
        pruned |= {
            "dt_polys": [p.tolist() for p in polys],
            "text_det_params": options.det.as_result(),
            "text_type": self.defaults.text_type,
        }
        if count:  # PaddleX leaves the angles out when nothing was detected
            turned = options.use_textline_orientation
            pruned["textline_orientation_angles"] = angles if turned else [-1] * count
        pruned |= {
            "text_rec_score_thresh": options.text_rec_score_thresh,
            "return_word_box": options.return_word_box,
            "rec_texts": [texts[i] for i in keep],
            "rec_scores": [scores[i] for i in keep],
            "rec_polys": [p.tolist() for p in rec_polys],
            "rec_boxes": detection.axis_aligned(rec_polys),
        }
        if text_layer_res is not None:
            pruned["text_layer_res"] = text_layer_res
        if options.return_word_box:
            pruned["text_word"] = [[w[0] for w in words[i]] for i in keep]
            frames = {i: lines.reading_frame(polys[i]) for i in keep}
            pruned["text_word_region"] = [
                [lines.word_quad(frames[i], w[1], w[2], angles[i]) for w in words[i]] for i in keep
            ]
        ocr_image = input_image = doc_image = None
        if options.visualize and image is not None:
            rgb = visualize.bgr_to_image(image)
            ocr_image = visualize.to_jpeg_base64(
                visualize.draw_ocr(rgb, pruned["rec_polys"], pruned["rec_texts"])
            )
            input_image = visualize.to_jpeg_base64(rgb)
            doc_image = input_image if doc is not None else None  # the page as it was read
        result = {
            "prunedResult": pruned,
            "ocrImage": ocr_image,
            "docPreprocessingImage": doc_image,
            "inputImage": input_image,
        }
        if data_info is None:
            return result
        return {"ocrResults": [result], "dataInfo": data_info}


def _transform_op(ops: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for op in ops:
        if isinstance(op, dict) and name in op:
            return dict(op[name] or {})
    return None


def _transform_arg(ops: list[dict[str, Any]], name: str, key: str) -> Any:
    op = _transform_op(ops, name)
    return None if op is None else op.get(key)


def parse_scale(value: Any) -> float:
    """PaddleX writes ``scale: 1./255.`` as a string in some inference.yml files."""
    if isinstance(value, str):
        numerator, _, denominator = value.partition("/")
        return float(numerator) / float(denominator or 1)
    return float(value)


STAGES = StageTable(  # the first is what a task with no stage runs
    Stage("image", OcrParams, "decode an image, detect and crop its lines, read them", OcrRunner.image_page),
    Stage("pdf", OcrParams, "check a PDF, fan out its pages, then the document", OcrRunner.split_pdf),
    Stage("page", OcrParams, "render one page of the PDF payload, then as image", OcrRunner.pdf_page),
    Stage("lines", LinesParams, "orientation and recognition of a group of line crops", OcrRunner.line_group),
    Stage("assemble", AssembleParams, "one page's result from its line groups' answers", OcrRunner.assemble),
    Stage("document", pdf.DocumentParams, "a PDF's result from its pages' results", OcrRunner.document),
)
