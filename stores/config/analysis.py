"""The config blocks of the analysis: what `analyze` fits (`analysis:`) and where it
runs its tasks (`cluster:`). Neither is part of a run's identity."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import validators as valid
from .validators import checked
from .vocab import CLUSTER_KINDS, PROBES, SPECTRAL_METHODS


@dataclass(frozen=True)
class AnalysisConfig:
    """The probes and their settings (`analysis:`).

    Attributes
    ----------
    probes : tuple of str
        Names from PROBES, fitted on every (run, epoch, layer).
    masc_components : float or tuple of float
        MASC's n: a fraction of explained variance in (0, 1) or a component count >= 1.
        A list is the n ablation (P1: 1, 0.25, 0.5, 0.75, 0.99): every n is fitted and
        stored under analysis/masc_n, keyed by n, and the first is the one the `masc` and
        `masc_true` probes use everywhere else (tables, dynamics, relabelling).
    knn_neighbors : int
        k of the k-NN probe.
    spectral : str
        MASC + VeLPIC (SPECTRAL_METHODS): "fast" (float32 products, the same k per class
        as float64) or "exact" (float64 throughout).
    device : str or None
        Runs the fast kernels through torch on "cuda" (or "cuda:N", "cpu"); null: NumPy.
    cross_labels : bool
        P1's third experiment: a clean run (observed = true labels) also gets MASC fitted
        with the observed labels of each corrupted run of the pipeline that has the same
        samples and differs from it in the corruption rate only (analysis/cross).
    relabel_seed : int or None
        P1's relabel-and-retrain: the seed of the 80/20 split of the test set (2345 in the
        authors' pytorch_retrain_early.py); the best MASC layer on the 20% part relabels
        the training set (analysis/relabel, written for every corrupted run at its final
        epoch). null: not computed.
    """

    probes: tuple[str, ...] = field(default=tuple(PROBES), metadata=checked(valid.names(tuple(PROBES))))
    masc_components: float | tuple[float, ...] = field(default=0.99, metadata=checked(valid.components))
    knn_neighbors: int = field(default=5, metadata=checked(valid.number(1, integer=True)))
    spectral: str = field(default="fast", metadata=checked(valid.choice(*SPECTRAL_METHODS)))
    device: str | None = field(default=None, metadata=checked(valid.device(optional=True)))
    cross_labels: bool = field(default=False, metadata=checked(valid.boolean))
    relabel_seed: int | None = field(default=2345, metadata=checked(valid.number(0, integer=True, optional=True)))

    @property
    def masc_ns(self) -> tuple[float, ...]:
        """Every MASC n asked for, the primary one first."""
        n = self.masc_components
        return tuple(n) if isinstance(n, tuple) else (n,)

    @property
    def primary_n(self) -> float:
        """The MASC n of the `masc` and `masc_true` probes outside the n ablation: the
        first of `masc_ns`."""
        return self.masc_ns[0]

    @property
    def fits_masc(self) -> bool:
        """Whether any MASC result (the `masc` or `masc_true` probe, so the n ablation) is
        asked for."""
        return bool({"masc", "masc_true"} & set(self.probes))


@dataclass(frozen=True)
class ClusterConfig:
    """Where `analyze` runs its tasks (`cluster:`). Not part of any run's identity: the
    same stores can be analysed on a laptop or a cluster. Command-line options override it.

    Attributes
    ----------
    kind : str
        One of CLUSTER_KINDS: a LocalCluster, or SLURM jobs through dask-jobqueue.
    workers : int or None
        Local worker processes (default: the cores) or SLURM jobs (default 1).
    queue, account : str or None
        The SLURM partition and the account to charge.
    cores, memory, walltime : int, str, str
        Per SLURM job (one single-threaded worker process per core).
    job_extra_directives : tuple of str
        Extra #SBATCH directives, e.g. --gres=gpu:1.
    """

    kind: str = field(default="local", metadata=checked(valid.choice(*CLUSTER_KINDS)))
    workers: int | None = field(default=None, metadata=checked(valid.workers(optional=True)))
    queue: str | None = field(default=None, metadata=checked(valid.optional_path))
    cores: int = field(default=4, metadata=checked(valid.number(1, integer=True)))
    memory: str = field(default="16GB", metadata=checked(valid.optional_path))
    walltime: str = field(default="01:00:00", metadata=checked(valid.optional_path))
    job_extra_directives: tuple[str, ...] = field(default=(), metadata=checked(valid.strings))
    account: str | None = field(default=None, metadata=checked(valid.optional_path))
