"""Plain data passed between stages: what a page is, what a line is."""

from __future__ import annotations

from dataclasses import dataclass, field

Point = tuple[float, float]


@dataclass
class Line:
    points: list[Point]
    text: str = ""
    confidence: float = 0.0
    det_confidence: float = 1.0
    column: int = 0
    indent: int = 0

    def to_json(self) -> dict:
        return {
            "points": [[round(float(x), 1), round(float(y), 1)] for x, y in self.points],
            "text": self.text,
            "confidence": round(float(self.confidence), 4),
        }


@dataclass
class PageResult:
    source: str
    page: int
    width: int
    height: int
    lines: list[Line] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "page": self.page,
            "width": self.width,
            "height": self.height,
            "lines": [line.to_json() for line in self.lines],
        }
