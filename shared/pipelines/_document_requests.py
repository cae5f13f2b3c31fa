"""Request fields every document pipeline shares (PaddleX's ``BaseInferRequest`` and its kin).

Not a pipeline (the leading underscore keeps it out of the registry): the
pieces OCR, doc_preprocessor, table_recognition and seal_recognition
requests are made of, so a field is declared, and validated, once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class FileRequest(BaseModel):
    """``file`` and ``fileType``, the document preprocessing switches, ``visualize``."""

    model_config = ConfigDict(extra="ignore")

    file: str = Field(
        description="Base64 of an image or PDF file, or an http(s) URL where URL inputs are enabled",
        json_schema_extra={"minLength": 1},
    )
    fileType: Literal[0, 1] | None = Field(default=None, description="0: PDF, 1: image; null: from the bytes")
    useDocOrientationClassify: StrictBool | None = None
    useDocUnwarping: StrictBool | None = None
    visualize: StrictBool | None = None


class DetectionOverrides(BaseModel):
    """A request's text detection settings; what it leaves out comes from the config."""

    model_config = ConfigDict(extra="forbid")

    limit_side_len: int | None = None
    limit_type: str | None = None
    thresh: float | None = None
    max_side_limit: int | None = None
    box_thresh: float | None = None
    unclip_ratio: float | None = None


class TextDetectionFields(BaseModel):
    """OCR's ``textDet*`` fields and ``textRecScoreThresh`` (tables take them too)."""

    textDetLimitSideLen: StrictInt | None = Field(default=None, gt=0, le=16384)
    textDetLimitType: Literal["min", "max"] | None = None
    textDetThresh: float | None = Field(default=None, ge=0, le=1)
    textDetBoxThresh: float | None = Field(default=None, ge=0, le=1)
    textDetUnclipRatio: float | None = Field(default=None, gt=0, le=10)
    textRecScoreThresh: float | None = Field(default=None, ge=0, le=1)

    def detection(self) -> DetectionOverrides:
        return DetectionOverrides(
            limit_side_len=self.textDetLimitSideLen,
            limit_type=self.textDetLimitType,
            thresh=self.textDetThresh,
            box_thresh=self.textDetBoxThresh,
            unclip_ratio=self.textDetUnclipRatio,
        )


class SealDetectionFields(BaseModel):
    """The ``sealDet*`` fields and ``sealRecScoreThresh`` (seal_recognition and PP-StructureV3)."""

    sealDetLimitSideLen: StrictInt | None = Field(default=None, gt=0, le=16384)
    sealDetLimitType: Literal["min", "max"] | None = None
    sealDetThresh: float | None = Field(default=None, ge=0, le=1)
    sealDetBoxThresh: float | None = Field(default=None, ge=0, le=1)
    sealDetUnclipRatio: float | None = Field(default=None, gt=0, le=10)
    sealRecScoreThresh: float | None = Field(default=None, ge=0, le=1)

    def seal_detection(self) -> DetectionOverrides:
        return DetectionOverrides(
            limit_side_len=self.sealDetLimitSideLen,
            limit_type=self.sealDetLimitType,
            thresh=self.sealDetThresh,
            box_thresh=self.sealDetBoxThresh,
            unclip_ratio=self.sealDetUnclipRatio,
        )
