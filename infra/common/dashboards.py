"""The one dashboard layout every cloud uses: tiles of one size, two per row, left to right."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def grid(tiles: Iterable[T], width: int, height: int, columns: int = 2) -> Iterator[tuple[int, int, T]]:
    """`(x, y, tile)` for each tile: row-major, `columns` per row, each `width` x `height`."""
    for i, tile in enumerate(tiles):
        yield (i % columns) * width, (i // columns) * height, tile

