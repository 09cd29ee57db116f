"""Settings of the NAT / NATv2 search (``nat.*`` in the config); kept free of heavy imports."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError
from ..predictors.surrogate import SURROGATES

INIT_POLICIES = ("genome-uniform", "architecture-space")
UPDATE_POLICIES = ("grow", "bounded")


@dataclass
class NATConfig:
    """The NAT / NATv2 loop; defaults are NATv2's, scaled down for a CPU (methods.md §4.7)."""

    policy: str = "natv2"             # natv2 | nat: sets the defaults below that are left as None
    init: str | None = None           # genome-uniform (NAT) | architecture-space (NATv2)
    preprocess: bool | None = None    # NATv2: evaluate oversample x archive_size, keep the best
    update: str | None = None         # grow (NAT) | bounded (NATv2)
    surrogate: str | None = None      # lgbm (NATv2) | rbf (NAT) | gp | as (adaptive switching)
    archive_size: int = 30            # n_doe
    oversample: int = 10
    candidates: int = 8               # K per iteration
    iterations: int = 5
    top_n: int = 15                   # archive members the gene distributions are fitted to
    aux_pop_size: int = 40
    aux_generations: int = 15
    adapt_steps: int = 20             # supernet SGD steps per iteration (0: no adaptation)
    adapt_subnets: int = 4            # subnets per step besides the largest (the teacher)
    adapt_lr: float = 0.005           # peak of the search-long warm-up + cosine schedule
    adapt_warmup_steps: int = 5
    adapt_weight_decay: float = 3e-5
    adapt_batch_size: int = 64
    kd_ratio: float = 1.0

    def resolved(self) -> "NATConfig":
        """A copy with the policy's defaults filled in, validated."""
        if self.policy not in ("nat", "natv2"):
            raise ConfigError(f"nat.policy must be 'nat' or 'natv2', got '{self.policy}'")
        v2 = self.policy == "natv2"
        out = NATConfig(**{**asdict(self),
                           "init": self.init or ("architecture-space" if v2 else "genome-uniform"),
                           "preprocess": v2 if self.preprocess is None else self.preprocess,
                           "update": self.update or ("bounded" if v2 else "grow"),
                           "surrogate": self.surrogate or ("lgbm" if v2 else "rbf")})
        if out.init not in INIT_POLICIES:
            raise ConfigError(f"nat.init must be one of {', '.join(INIT_POLICIES)}, got '{out.init}'")
        if out.update not in UPDATE_POLICIES:
            raise ConfigError(f"nat.update must be one of {', '.join(UPDATE_POLICIES)}, got '{out.update}'")
        if out.surrogate not in SURROGATES:
            raise ConfigError(f"nat.surrogate must be one of {', '.join(SURROGATES)}, got '{out.surrogate}'")
        for name in ("archive_size", "candidates", "iterations", "top_n", "aux_pop_size", "aux_generations",
                     "oversample"):
            if getattr(out, name) < 1:
                raise ConfigError(f"nat.{name} must be >= 1, got {getattr(out, name)}")
        if out.adapt_steps < 0 or out.adapt_warmup_steps < 0:
            raise ConfigError("nat.adapt_steps and nat.adapt_warmup_steps must be >= 0")
        if out.archive_size < 4:
            raise ConfigError(f"nat.archive_size must be >= 4, got {out.archive_size}")
        return out
