"""The TorchRec ranker: sparse id/category features in an EmbeddingBagCollection, dense score and
multimodal features, a DCN-style cross network and an MLP; trained with DistributedModelParallel.

Training runs in one CPU process (gloo, world size 1) by default, or under ``torchrun`` with
several processes or GPUs (nccl): the process group already set up by torchrun is used as is.
"""

from __future__ import annotations

import copy
import os
import socket
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import torch
from torch import nn

from crossrec_core.logs import drop_log_messages

# torch logs this once per process from ProxyableClassMeta.__call__, the metaclass of TorchRec's
# KeyedJaggedTensor: building any KJT, with no tracing anywhere, prints advice meant for code that
# calls is_fx_tracing itself (this TorchRec's, not ours). Only that line of torch.fx is dropped.
drop_log_messages("torch.fx._symbolic_trace", r"is_fx_tracing will return true for both fx.symbolic_trace")

__all__ = [
    "RankerConfig",
    "RankerBatch",
    "RankerRows",
    "DCNRanker",
    "RankerEnsemble",
    "SPARSE_KEYS",
    "FEATURE_GROUPS",
    "train_ranker",
    "TrainStats",
    "process_group",
    "torch_threads",
    "SMALL_BATCH",
]

_KIND = "recsys.ranker"
WEIGHTS_FILE = "model.safetensors"
SPARSE_KEYS = ("user_id", "item_id", "genre", "age_bucket", "sex", "occupation")
BASE_DENSE = ("als", "als_z", "bpr_z", "recent", "popularity", "trend", "genre_affinity", "history_size")
MM_DENSE = ("cos_fused", "cos_image", "cos_text", "image_ok")
# Feature group -> (sparse keys, dense columns, whether the multimodal embedding block belongs to it)
FEATURE_GROUPS = {
    "collaborative": ((), ("als", "als_z", "bpr_z", "recent"), False),
    "popularity": ((), ("popularity", "trend"), False),
    "genre": (("genre",), ("genre_affinity",), False),
    "ids": (("user_id", "item_id"), ("history_size",), False),
    "demographics": (("age_bucket", "sex", "occupation"), (), False),
    "multimodal": ((), MM_DENSE, True),
}


@dataclass(frozen=True)
class RankerConfig:
    n_users: int  # user id rows (row 0 = unknown user)
    n_items: int  # item rows (row 0 = unknown item)
    n_genres: int
    n_occupations: int
    mm_dim: int = 0  # D of the aligned item embeddings; 0 = no multimodal features
    mm_block: int = 0  # width of the multimodal vector input (B, mm_block) to its MLP; 0 = none
    embedding_dim: int = 16
    cross_layers: int = 2
    hidden: tuple[int, ...] = (64, 32)
    mm_hidden: int = 32

    @property
    def dense_names(self) -> tuple[str, ...]:
        return BASE_DENSE + (MM_DENSE if self.mm_dim else ())

    @property
    def table_sizes(self) -> dict[str, int]:
        # age buckets: 0 unknown + len(AGE_BUCKETS) + 1; sex: unknown/M/F
        return {"user_id": self.n_users, "item_id": self.n_items, "genre": self.n_genres, "age_bucket": 8,
                "sex": 3, "occupation": self.n_occupations + 1}


@dataclass(frozen=True)
class RankerBatch:
    """Rows to score: sparse ids (B,), genre ids (B, G_max) padded with -1, demographic codes (B, 3),
    dense (B, F), multimodal vectors (B, mm_block) or None."""

    user_rows: np.ndarray
    item_rows: np.ndarray
    genres: np.ndarray
    demo_codes: np.ndarray  # (B, 3) age bucket, sex, occupation
    dense: np.ndarray
    mm: np.ndarray | None

    def __len__(self) -> int:
        return len(self.item_rows)

    def take(self, idx: np.ndarray) -> "RankerBatch":
        return RankerBatch(self.user_rows[idx], self.item_rows[idx], self.genres[idx], self.demo_codes[idx],
                           self.dense[idx], None if self.mm is None else self.mm[idx])

    @classmethod
    def concat(cls, batches: list["RankerBatch"]) -> "RankerBatch":
        cat = lambda name: np.concatenate([getattr(b, name) for b in batches])  # noqa: E731
        return cls(cat("user_rows"), cat("item_rows"), cat("genres"), cat("demo_codes"), cat("dense"),
                   None if batches[0].mm is None else cat("mm"))

    def kjt(self):
        from torchrec import KeyedJaggedTensor

        one = np.ones(len(self), np.int64)
        has_genre = self.genres >= 0
        values = np.concatenate([self.user_rows, self.item_rows, self.genres[has_genre], self.demo_codes[:, 0],
                                 self.demo_codes[:, 1], self.demo_codes[:, 2]]).astype(np.int64)
        lengths = np.concatenate([one, one, has_genre.sum(1), one, one, one]).astype(np.int64)
        return KeyedJaggedTensor.from_lengths_sync(keys=list(SPARSE_KEYS), values=torch.from_numpy(values),
                                                   lengths=torch.from_numpy(lengths))

    def rows(self) -> "RankerRows":
        """The batch as the tensors ``DCNRanker.score`` reads (built once, shared by the members)."""
        has_genre = self.genres >= 0
        offsets = np.zeros(len(self) + 1, np.int64)
        np.cumsum(has_genre.sum(1), out=offsets[1:])
        codes = torch.from_numpy(np.ascontiguousarray(self.demo_codes, dtype=np.int64))
        return RankerRows(torch.from_numpy(self.user_rows.astype(np.int64, copy=False)),
                          torch.from_numpy(self.item_rows.astype(np.int64, copy=False)),
                          torch.from_numpy(self.genres[has_genre].astype(np.int64)), torch.from_numpy(offsets),
                          codes[:, 0], codes[:, 1], codes[:, 2], torch.from_numpy(self.dense),
                          None if self.mm is None else torch.from_numpy(self.mm))


@dataclass(frozen=True)
class RankerRows:
    """A ``RankerBatch`` as tensors for inference: one id per row of the single-id keys (B,), the
    genre bags as values and B + 1 offsets (the layout the EmbeddingBagCollection passes to its
    genre bag), dense (B, F) and multimodal (B, mm_block) or None."""

    user: torch.Tensor
    item: torch.Tensor
    genre_values: torch.Tensor
    genre_offsets: torch.Tensor
    age: torch.Tensor
    sex: torch.Tensor
    occupation: torch.Tensor
    dense: torch.Tensor
    mm: torch.Tensor | None


class DCNRanker(nn.Module):
    """Pooled embeddings (6 x E) + bottom MLPs over dense and multimodal inputs -> cross net -> MLP,
    plus a wide linear term on the dense features -> logit."""

    def __init__(self, config: RankerConfig, device: torch.device | str = "cpu") -> None:
        super().__init__()
        from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

        self.config = config
        e = config.embedding_dim
        self.ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=f"t_{k}", embedding_dim=e, num_embeddings=n, feature_names=[k],
                                       pooling=PoolingType.MEAN if k == "genre" else PoolingType.SUM)
                    for k, n in config.table_sizes.items()],
            device=torch.device(device),
        )
        n_dense = len(config.dense_names)
        self.dense_mlp = nn.Sequential(nn.Linear(n_dense, e), nn.ReLU())
        width = e * (len(SPARSE_KEYS) + 1)
        if config.mm_block:
            self.mm_mlp = nn.Sequential(nn.Linear(config.mm_block, config.mm_hidden), nn.ReLU())
            width += config.mm_hidden
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(config.cross_layers))
        layers, prev = [], width
        for h in config.hidden:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        self.top = nn.Sequential(*layers, nn.Linear(prev, 1))
        # Wide part: a linear term on the dense scores keeps the strong monotone signals (ALS score,
        # popularity) one step from the logit.
        self.wide = nn.Linear(n_dense, 1)

    def forward(self, kjt, dense: torch.Tensor, mm: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) logits. ``drop`` (B, n_keys + n_dense + 1) 0/1 masks zero feature groups per row
        (explanations score every ablation of a request in one batch)."""
        pooled = self.ebc(kjt)
        return self._head([pooled[k] for k in SPARSE_KEYS], dense, mm, drop)

    def score(self, rows: RankerRows, drop: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) logits, equal to ``forward`` on the same batch (same operations on the same values),
        without a KeyedJaggedTensor: a SUM bag of one id is that table row, so the single-id keys
        are row lookups, and the genre bag is the call the collection itself makes. For serving:
        building and splitting the KJT cost more than the small network (training keeps ``forward``,
        which DistributedModelParallel shards)."""
        bags = self.ebc.embedding_bags
        row = lambda key, ids: bags[key].weight.index_select(0, ids)  # noqa: E731
        embs = [row("t_user_id", rows.user), row("t_item_id", rows.item),
                bags["t_genre"](input=rows.genre_values, offsets=rows.genre_offsets),
                row("t_age_bucket", rows.age), row("t_sex", rows.sex), row("t_occupation", rows.occupation)]
        return self._head(embs, rows.dense, rows.mm, drop)

    def _head(self, embs: list[torch.Tensor], dense: torch.Tensor, mm: torch.Tensor | None,
              drop: torch.Tensor | None) -> torch.Tensor:
        """Pooled embeddings per sparse key (in ``SPARSE_KEYS`` order) + dense -> (B,) logits. The
        layers are applied as functions (``_apply``): the same kernels as calling the modules, minus
        the module-call overhead, which dominates a serving batch of a few hundred rows."""
        n_keys = len(SPARSE_KEYS)
        if drop is not None:
            embs = [x * drop[:, i : i + 1] for i, x in enumerate(embs)]
            dense = dense * drop[:, n_keys : n_keys + dense.shape[1]]
        parts = embs + [_apply(self.dense_mlp, dense)]
        if self.config.mm_block:
            mm_out = _apply(self.mm_mlp, mm)
            parts.append(mm_out if drop is None else mm_out * drop[:, -1:])
        x0 = torch.cat(parts, dim=1)
        x = x0
        for layer in self.cross:  # DCN-v2 cross: x_{l+1} = x0 * (W x_l + b) + x_l
            x = x0 * nn.functional.linear(x, layer.weight, layer.bias) + x
        return (_apply(self.top, x) + nn.functional.linear(dense, self.wide.weight, self.wide.bias)).squeeze(1)

    def group_mask(self, group: str) -> torch.Tensor:
        """Mask that drops one feature group (see ``FEATURE_GROUPS``)."""
        keys, cols, with_mm = FEATURE_GROUPS[group]
        names = list(SPARSE_KEYS) + list(self.config.dense_names) + ["mm"]
        mask = torch.ones(len(names))
        for n in list(keys) + [c for c in cols if c in names]:
            mask[names.index(n)] = 0.0
        if with_mm:
            mask[-1] = 0.0
        return mask


def _apply(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)`` for a stack of Linear and ReLU modules, as the functions those modules call."""
    for layer in layers:
        if isinstance(layer, nn.Linear):
            x = nn.functional.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.ReLU):
            x = torch.relu(x)
        else:  # a new layer kind must be added here, not silently taken for a ReLU
            raise TypeError(f"_apply: unsupported layer {type(layer).__name__}; expected Linear or ReLU")
    return x


class RankerEnsemble(nn.Module):
    """``n`` DCN rankers trained with different seeds; the logit is their mean (seed averaging
    cancels much of the seed-to-seed variance of a small ranker)."""

    def __init__(self, config: RankerConfig, n_models: int = 1, device: torch.device | str = "cpu") -> None:
        super().__init__()
        if n_models < 1:
            raise ValueError(f"n_models={n_models}: must be >= 1")
        self.config = config
        self.members = nn.ModuleList(DCNRanker(config, device) for _ in range(n_models))

    def forward(self, kjt, dense: torch.Tensor, mm: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) mean logit of the members (same inputs as ``DCNRanker.forward``)."""
        return torch.stack([m(kjt, dense, mm, drop) for m in self.members]).mean(dim=0)

    def score(self, batch: RankerBatch, drop: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) mean logit of the members through ``DCNRanker.score`` (serving; equal to ``forward``)."""
        rows = batch.rows()
        return torch.stack([m.score(rows, drop) for m in self.members]).mean(dim=0)

    def group_mask(self, group: str) -> torch.Tensor:
        return self.members[0].group_mask(group)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """``config.json`` (``RankerConfig``) and the members' weights (``model.safetensors``)."""
        from safetensors.torch import save_file

        from crossrec_core.persist import atomic_directory, save_config

        with atomic_directory(directory) as tmp:
            save_config(self.config, tmp, _KIND)
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp / WEIGHTS_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "RankerEnsemble":
        from crossrec_core.persist import load_config

        return cls.from_state(load_config(RankerConfig, directory, _KIND), os.path.join(directory, WEIGHTS_FILE))

    @classmethod
    def from_state(cls, config: RankerConfig, weights: str | os.PathLike) -> "RankerEnsemble":
        """An ensemble of as many members as the safetensors file ``weights`` holds, in eval mode."""
        from safetensors.torch import load_file

        from crossrec_core.errors import ModelLoadError

        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own error types for a missing or damaged file
            raise ModelLoadError(f"{weights}: cannot read the ranker weights ({exc})") from exc
        members = {int(k.split(".")[1]) for k in state if k.startswith("members.")}
        if not members:
            raise ModelLoadError(f"{weights}: the ranker weights are of one model, not an ensemble (saved by an older "
                                 "version): retrain it (crossrec rank train)")
        ensemble = cls(config, max(members) + 1)
        try:
            ensemble.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"{weights}: ranker weights do not fit the saved feature sizes ({exc})") from exc
        return ensemble.eval()


# Below this many rows a forward pass is too small to gain from intra-op threads, and on a busy
# small machine waking them costs far more than the pass itself (p99 x20 seen on 2 loaded cores).
SMALL_BATCH = 4096


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (process-wide), then restore the previous count."""
    prev = torch.get_num_threads()
    if n == prev:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process_group() -> Iterator[None]:
    """Use the process group torchrun set up, or create a single-process one (gloo on CPU, nccl on GPU)."""
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # launched by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    else:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(_free_port())
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@dataclass(frozen=True)
class TrainStats:
    samples: int
    seconds: float
    samples_per_s: float
    final_loss: float
    world_size: int
    epochs: int  # epochs kept (early stopping on the held-out groups)
    held_out_loss: float  # per group (softmax) or per row (logistic); inf without a held-out share


def _to_tensors(batch: RankerBatch, device: torch.device):
    mm = None if batch.mm is None else torch.from_numpy(batch.mm).to(device)
    return batch.kjt().to(device), torch.from_numpy(batch.dense).to(device), mm


def train_ranker(model: DCNRanker, examples: RankerBatch, labels: np.ndarray, *, group_size: int = 1,
                 epochs: int = 3, held_out: float = 0.0, batch_size: int = 1024, lr: float = 3e-3,
                 weight_decay: float = 0.0, item_id_dropout: float = 0.0, seed: int = 0,
                 progress: bool = True) -> TrainStats:
    """Train ``model`` in place with DistributedModelParallel (embeddings: fused Adagrad; dense: AdamW).

    ``group_size`` 1: pointwise logistic loss on ``labels`` (B,). ``group_size`` G > 1: the rows come
    in consecutive groups of G, the positive first and G - 1 negatives (the user's candidates), and
    the loss is the softmax cross-entropy of each group (listwise: what serving does is rank a
    user's candidates). ``batch_size`` counts rows. ``held_out`` > 0 keeps that share of the groups
    out of training and stops when their loss stops falling (keeping the best epoch's weights).
    ``item_id_dropout``: share of training rows, drawn afresh each step, whose item id is replaced
    by the unknown-item row 0 (DropoutNet: the ranker learns to score items from their content).
    Each rank trains on its slice of the groups; the trained weights are copied back into
    ``model`` on every rank (sharded tables are gathered).
    """
    import time

    import torch.distributed as dist
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints
    from torchrec.distributed.planner.storage_reservations import FixedPercentageStorageReservation
    from torchrec.distributed.planner.types import KernelConfig, TopologyFactory, TrainerConfig
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
    from torchrec.optim.optimizers import in_backward_optimizer_filter
    from tqdm import tqdm

    if group_size < 1 or len(examples) % group_size:
        raise ValueError(f"group_size={group_size}: must be >= 1 and divide the {len(examples)} examples")
    if not 0.0 <= item_id_dropout < 1.0:
        raise ValueError(f"item_id_dropout={item_id_dropout}: must be a share in [0, 1)")
    with process_group():
        rank, world = dist.get_rank(), dist.get_world_size()
        device = torch.device(f"cuda:{rank % torch.cuda.device_count()}") if torch.cuda.is_available() else torch.device("cpu")
        torch.manual_seed(seed)
        # DMP shards modules in place: train a copy, then load the gathered weights into ``model``.
        work = copy.deepcopy(model)
        apply_optimizer_in_backward(torch.optim.Adagrad, work.ebc.parameters(), {"lr": lr * 10})
        # Every table table-wise with the fused kernel: the dense data-parallel kernel has no
        # registered autograd on CPU.
        constraints = {f"t_{k}": ParameterConstraints(sharding_types=["table_wise"], compute_kernels=["fused"])
                       for k in SPARSE_KEYS}
        # The factory resolves the topology from the hardware (a directly built Topology is
        # deprecated); a fixed reservation avoids the heuristic one's dry-run over-estimate.
        topology = TopologyFactory.create_topology(TrainerConfig(world_size=world),
                                                   kernel_config=KernelConfig(compute_device=device.type))
        planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints,
                                           storage_reservation=FixedPercentageStorageReservation(0.15))
        plan = planner.collective_plan(work, [EmbeddingBagCollectionSharder()], dist.GroupMember.WORLD)
        with warnings.catch_warnings():
            # torchrec's own DDP wrapper passes the deprecated broadcast_buffers; nothing to change here.
            warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
            dmp = DistributedModelParallel(work, device=device, plan=plan)
        dense_opt = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(dmp.named_parameters())),
                                          lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay))
        opt = CombinedOptimizer([dmp.fused_optimizer, dense_opt])
        rng = np.random.default_rng(seed + rank)
        # Early stopping: a held-out share of the groups (the same on every rank) scores each epoch.
        n_groups = len(examples) // group_size
        held = np.sort(np.random.default_rng(seed).permutation(n_groups)[: int(n_groups * held_out)])
        mine = np.setdiff1d(np.arange(n_groups), held)[rank::world]
        y_all = torch.from_numpy(labels.astype(np.float32))
        offsets = np.arange(group_size)

        def loss_of(groups: np.ndarray, model_: nn.Module, training: bool = False) -> torch.Tensor:
            idx = (groups[:, None] * group_size + offsets).reshape(-1)
            batch = examples.take(idx)
            if training and item_id_dropout:
                batch = replace(batch, item_rows=np.where(rng.random(len(idx)) < item_id_dropout, 0, batch.item_rows))
            kjt, dense, mm = _to_tensors(batch, device)
            logits = model_(kjt, dense, mm)
            if group_size == 1:
                return nn.functional.binary_cross_entropy_with_logits(logits, y_all[idx].to(device), reduction="sum")
            target = torch.zeros(len(groups), dtype=torch.long, device=device)
            return nn.functional.cross_entropy(logits.view(-1, group_size), target, reduction="sum")

        per_batch = max(1, batch_size // group_size)
        # Same number of steps on every rank, or collective calls would hang.
        steps_t = torch.tensor([(len(mine) + per_batch - 1) // per_batch])
        dist.all_reduce(steps_t, op=dist.ReduceOp.MIN)
        steps = int(steps_t)
        loss_val, done, best_loss, best_epoch, best_state = float("nan"), 0, float("inf"), epochs, None
        start = time.perf_counter()
        bar = tqdm(total=epochs * steps, desc="train ranker", disable=not progress or rank != 0, leave=False)
        for epoch in range(epochs):
            order = rng.permutation(mine)
            for step in range(steps):
                groups = order[step * per_batch : (step + 1) * per_batch]
                loss = loss_of(groups, dmp, training=True) / len(groups)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_val, done = loss.detach().item(), done + len(groups) * group_size
                bar.update(1)
            if len(held):
                with torch.no_grad():
                    sums = torch.tensor([sum(float(loss_of(g, dmp)) for g in np.array_split(held[rank::world], 8) if len(g)),
                                         len(held[rank::world])], dtype=torch.float64)
                dist.all_reduce(sums)
                held_loss = float(sums[0] / max(float(sums[1]), 1.0))
                if held_loss >= best_loss:
                    break
                best_loss, best_epoch, best_state = held_loss, epoch + 1, _gather_state(dmp.state_dict())
        bar.close()
        seconds = time.perf_counter() - start
        total = torch.tensor([done])
        dist.all_reduce(total)
        model.load_state_dict(best_state if best_state is not None else _gather_state(dmp.state_dict()))
        return TrainStats(int(total), seconds, float(total) / max(seconds, 1e-9), loss_val, world, best_epoch, best_loss)


def _gather_state(state: dict) -> dict:
    """Full (unsharded) tensors for every entry of a DMP state dict, on every rank."""
    with warnings.catch_warnings():
        # Table-wise sharding in this torchrec still yields ShardedTensor (its DTensor path is not
        # there for CPU yet); gathering it is the supported way meanwhile.
        warnings.filterwarnings("ignore", message="Please use DTensor instead", category=FutureWarning)
        return _gather_tensors(state)


def _gather_tensors(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        name = key.removeprefix("module.").removeprefix("_dmp_wrapped_module.")
        if hasattr(value, "full_tensor"):  # DTensor
            value = value.full_tensor()
        elif hasattr(value, "local_shards"):  # ShardedTensor: gather on rank 0, then broadcast
            import torch.distributed as dist

            full = torch.empty(value.size(), dtype=value.dtype) if dist.get_rank() == 0 else None
            value.gather(0, full)
            if full is None:
                full = torch.empty(value.size(), dtype=value.dtype)
            dist.broadcast(full, 0)
            value = full
        out[name] = value.detach().cpu()
    return out
