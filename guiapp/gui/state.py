"""The wizard's shared state: one object made of core dataclasses.

Pages read it to show settings and write it (with dataclasses.replace) when
the user edits; it converts to and from the job document the CLI reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.calibrate.calibcache import default_path
from ..core.data.preprocess import PreprocessSpec, matching_preset, preset
from ..core.job import CalibrationSettings, EvalSettings, Job, QuantSettings, TargetSettings, TuningSettings
from ..core.model.modelinfo import ModelInfo
from ..core.targets.registry import TARGETS
from ..core.tasks import TaskGuess, TaskSettings, default_resize, detect_task


@dataclass
class WizardState:
    model_path: Path | None = None
    info: ModelInfo | None = None
    preprocess: PreprocessSpec = field(default_factory=lambda: preset("imagenet"))
    preset_name: str | None = "imagenet"  # the preset the user chose (None: custom values)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    quantization: QuantSettings = field(default_factory=QuantSettings)
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    output: Path | None = None  # None: the default place, beside the model (default_output)
    output_unset: bool = False  # the job opened had no output: a saved job keeps it so
    cache: Path | None = None  # the job's calibration cache (None: the default place, cache_path)
    report_path: Path | None = None  # where a run writes its report (a job may name one)
    inputs: dict[str, tuple[float, ...]] = field(default_factory=dict)  # constants for inputs besides the image
    task: TaskSettings = field(default_factory=TaskSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    task_guess: TaskGuess | None = None  # what the model does (detected, or the user's choice)
    target: TargetSettings = field(default_factory=TargetSettings)
    report: dict | None = None  # the last run's report
    samples: list = field(default_factory=list)  # the last run's picture data (boxes, maps)
    job_file: Path | None = None

    def default_output(self) -> Path | None:
        if self.model_path is None:
            return None
        return self.model_path.with_name(self.model_path.name.removesuffix(".onnx") + ".int8" + target_suffix(self.target.kind))

    def cache_path(self) -> Path | None:
        """The job's cache, else calibration statistics live beside the job
        file, else beside the output (none for RKNN, whose toolkit calibrates
        itself)."""
        out = self.output or self.default_output()
        if not TARGETS[self.target.kind].uses_cache or (out is None and self.cache is None):
            return None
        return self.cache or default_path(out, self.job_file)

    def set_target(self, target: TargetSettings) -> None:
        """A new target: an output named for another target's file type follows."""
        old, new = target_suffix(self.target.kind), target_suffix(target.kind)
        self.target = target
        if self.output is not None and old != new and self.output.name.endswith(old):
            self.output = self.output.with_name(self.output.name.removesuffix(old) + new)

    def job_document(self) -> Job:
        """The job as a file keeps it: what the job opened held, with the
        user's edits. Unset places stay unset (the cache's default is decided
        when the job runs); an output the wizard chose is written out, so
        that ``guiapp quantize --job`` runs the file as it is."""
        job = self.to_job()
        return replace(job, output=None if self.output is None and self.output_unset else job.output, cache=self.cache)

    def to_job(self) -> Job:
        """The job a run gets: every place decided."""
        assert self.model_path is not None
        return Job(
            model=self.model_path,
            output=self.output or self.default_output(),
            preprocess=self.preprocess,
            calibration=self.calibration,
            quantization=self.quantization,
            evaluation=self.evaluation,
            report=self.report_path,
            cache=self.cache_path(),
            inputs=dict(self.inputs),
            task=self.task,
            tuning=self.tuning,
            target=self.target,
        )

    def load_job(self, job: Job, path: Path | None) -> None:
        self.model_path = job.model
        self.info = None
        self.preprocess = job.preprocess
        self.preset_name = matching_preset(job.preprocess)
        self.calibration = job.calibration
        self.quantization = job.quantization
        self.evaluation = job.evaluation
        self.output, self.output_unset = job.output, job.output is None
        self.cache, self.report_path = job.cache, job.report
        self.inputs = dict(job.inputs)
        self.task = job.task
        self.tuning = job.tuning
        self.task_guess = None
        self.target = job.target
        self.report = None
        self.samples = []
        self.job_file = path

    def set_model(self, path: Path, info: ModelInfo, guess: TaskGuess) -> None:
        """A newly opened model: settings that belong to another model reset,
        and the task decides the resize policy (detectors and dense models
        see the whole picture: no centre crop)."""
        same = self.model_path is not None and Path(path) == Path(self.model_path)
        self.model_path, self.info, self.task_guess = Path(path), info, guess
        if not same:
            self.output, self.output_unset, self.cache, self.report_path = None, False, None, None
            self.inputs = {}
            self.quantization = replace(self.quantization, exclude_nodes=())
            self.report = None
            self.samples = []
            self.task = TaskSettings()
            channels = info.image_input.channels if info.image_input else 3
            if channels != self.preprocess.channels:
                self.preprocess = preset(self.preset_name or "imagenet", channels, resize=self.preprocess.resize)
            self.preprocess = replace(self.preprocess, size=None, layout="auto", resize=default_resize(guess.kind))
            stated = self.file_preprocessing()
            if stated is not None:  # what the exporter wrote (Ultralytics: RGB, x/255, letterbox 114)
                self.preprocess = stated
                self.preset_name = matching_preset(stated)
            if info.image_input is not None and info.image_input.size is None and info.input_size:
                self.preprocess = replace(self.preprocess, size=info.input_size)  # the size the file states, checked by a run
        # A job's own size stays as it was (None: the size the model runs at, which the Model page shows).

    def file_preprocessing(self) -> PreprocessSpec | None:
        """The preprocessing the model's file states, when its channels fit."""
        info = self.info
        stated = info.exporter.preprocessing if info is not None else None
        if stated is None or info.image_input is None or info.image_input.channels != len(stated.mean):
            return None
        return replace(self.preprocess, mean=stated.mean, std=stated.std, color=stated.color, resize=stated.resize,
                       pad_value=stated.pad_value)

    def set_task(self, kind: str) -> TaskGuess:
        """The user's task choice ("auto" to detect). Raises JobError when the
        outputs cannot be read as that task."""
        assert self.info is not None
        guess = detect_task(self.info, kind)
        self.task = replace(self.task, kind=kind)
        if self.task_guess is None or guess.kind != self.task_guess.kind:
            self.preprocess = replace(self.preprocess, resize=default_resize(guess.kind))
        self.task_guess = guess
        return guess


def target_suffix(kind: str) -> str:
    return TARGETS[kind].suffix
