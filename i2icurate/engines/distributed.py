"""Multi-process training under `torchrun`: who this process is, and the few collectives the trainers need.

`torchrun --nproc_per_node N -m i2icurate discover ...` starts N copies of the command with RANK, WORLD_SIZE and
LOCAL_RANK in the environment. `init_distributed` turns that into a `Dist` (NCCL on CUDA, gloo on CPU); without
those variables every helper here is a no-op, so single-process code paths stay unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

from i2icurate.errors import UserError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, number of processes, and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains together."""
        return self.world > 1

    @property
    def seed_offset(self) -> int:
        """Added to the seeds of per-rank random streams (augmentation, permutations), so ranks draw differently."""
        return 7919 * self.rank

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress, writes checkpoints and exports."""
        return self.rank == 0


SINGLE = Dist()
T = TypeVar("T")


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher) set a world size above one."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_name: str) -> tuple[Dist, str]:
    """Join the process group torchrun prepared; returns the Dist and the device this rank must use.

    `device_name` is the run's --device: 'auto' or 'cuda' become this rank's GPU (cuda:LOCAL_RANK); 'cpu' trains on
    the CPU with the gloo backend. Outside torchrun it returns (SINGLE, device_name) and starts nothing.
    """
    if not launched_by_torchrun():
        return SINGLE, device_name
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device_name}: no CUDA device is visible to rank {rank}")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    else:
        device_name = "cpu"
    if not torch_dist.is_initialized():
        # Long timeout: rank 0 alone scans and decodes the folder while the others wait in a broadcast.
        torch_dist.init_process_group("nccl" if use_cuda else "gloo", timeout=dt.timedelta(hours=6))
    return Dist(rank, world, local_rank), device_name


def shutdown(dist: Dist) -> None:
    """Leave the process group (a no-op for single-process runs)."""
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def broadcast_object(dist: Dist, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable objects only)."""
    if not dist.enabled:
        return obj
    box = [obj if dist.is_main else None]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(dist: Dist, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not dist.enabled:
        return [obj]
    out: list[Any] = [None] * dist.world
    torch_dist.all_gather_object(out, obj)
    return out


def all_gather_rows(dist: Dist, t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's (B, ...) tensor along dim 0, in rank order; no gradient."""
    if not dist.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.world)]
    torch_dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with a backward pass that is itself an all_reduce(SUM) of the incoming gradients.

    Hand-written because torch.distributed.nn.functional.all_reduce, which does the same, is deprecated.
    """

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 - autograd.Function signature
        out = t.clone()
        torch_dist.all_reduce(out, op=torch_dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        grad = grad.clone()
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(dist: Dist, t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over ranks, differentiable: the backward pass sums the incoming gradients over ranks too.

    Used for IIC's joint distribution: with DDP averaging parameter gradients over ranks, the summed backward makes
    every rank's gradient equal to the single-process gradient of the loss on the whole batch.
    """
    if not dist.enabled:
        return t
    return _SumOverRanks.apply(t)


def any_rank(dist: Dist, flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (e.g. one rank got Ctrl-C)."""
    if not dist.enabled:
        return flag
    nccl = torch_dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(dist: Dist) -> None:
    """Wait for every rank."""
    if dist.enabled:
        torch_dist.barrier()


def run_on_main_and_share(dist: Dist, setup: Callable[[], T]) -> T:
    """Run `setup` on rank 0 only and return its result on every rank.

    If it fails on rank 0 the other ranks are released and exit with status 2 while rank 0 raises the error
    (a UserError there becomes the usual one-line message).
    """
    result: Any = None
    if dist.is_main:
        try:
            result = ("ok", setup())
        except BaseException as exc:
            broadcast_object(dist, ("failed", str(exc) or type(exc).__name__))
            raise
    status, value = broadcast_object(dist, result)
    if status == "failed":
        raise SystemExit(2)  # rank 0 reports the error
    return value


def average_gradients_on_step(dist: Dist, optimizer: torch.optim.Optimizer) -> None:
    """Before every `optimizer.step()`, replace each gradient by its mean over ranks (one all-reduce per dtype).

    Data parallelism for trainers whose steps call sub-module methods (an encoder tap, one critic of a ModuleDict)
    that DistributedDataParallel's forward hook never sees. Unlike DDP it does not overlap communication with the
    backward pass; the arithmetic is the same.
    """
    if not dist.enabled:
        return

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:  # noqa: ARG001 - hook signature
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        for dtype in {g.dtype for g in grads}:
            same = [g for g in grads if g.dtype == dtype]
            flat = torch._utils._flatten_dense_tensors(same)
            torch_dist.all_reduce(flat, op=torch_dist.ReduceOp.SUM)
            flat.div_(dist.world)
            for grad, mean in zip(same, torch._utils._unflatten_dense_tensors(flat, same), strict=True):
                grad.copy_(mean)

    optimizer.register_step_pre_hook(hook)


def broadcast_module(dist: Dist, *modules: torch.nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if not dist.enabled:
        return
    with torch.no_grad():
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                torch_dist.broadcast(tensor, src=0)
