"""The processes that build one teacher cache together (torchrun, one node or many).

Chunks of objects are dealt out by index (chunk k goes to rank k mod world size); rank 0 alone decides
(lock, resume, start) and finishes (stats, checksums, meta.json, publish), and tells the others through a gloo
group, so coordination works beside any backend the caller chose for its own work. One process is the
one-rank case of the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.distributed as dist

__all__ = ["Shards"]


@dataclass
class Shards:
    rank: int = 0
    world_size: int = 1
    group: Any = None  # a gloo process group; None for one process

    @classmethod
    def current(cls) -> Shards:
        """Every process of an initialised default process group, else this process alone."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return cls()
        group = dist.new_group(backend="gloo")  # collective: every rank builds the cache
        return cls(dist.get_rank(), dist.get_world_size(), group)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, chunk: int) -> bool:
        return chunk % self.world_size == self.rank

    def barrier(self) -> None:
        if self.group is not None:
            dist.barrier(group=self.group)

    def decided_by_main(self, decide: Callable[[], Any]) -> Any:
        """Rank 0's ``decide()``, on every rank; an exception it raises is raised on every rank."""
        if self.group is None:
            return decide()
        box: list = [None]
        if self.is_main:
            try:
                box[0] = ("ok", decide())
            except Exception as exc:  # re-raised below, on rank 0 and everywhere else
                box[0] = ("error", exc)
        dist.broadcast_object_list(box, src=0, group=self.group)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value
