"""The job document: round trip and validation that names the field."""

import json

import pytest

from guiapp.core.errors import JobError
from guiapp.core.job import JOB_VERSION, CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.run import job_from_dict, load_job
from guiapp.core.data.preprocess import preset


def full_job(tmp_path):
    return Job(
        model=tmp_path / "m.onnx",
        output=tmp_path / "out" / "m.int8.onnx",
        preprocess=preset("caffe", resize="letterbox", pad_value=114, size=(300, 200)),
        calibration=CalibrationSettings(folders=(tmp_path / "c1", tmp_path / "c2"), max_images=77, seed=5, batch_size=4),
        quantization=QuantSettings(format="qoperator", per_channel=False, activation_type="int8", exclude_nodes=("a", "b")),
        evaluation=EvalSettings(folders=(tmp_path / "e",), labels_from="csv", labels_csv=tmp_path / "l.csv", class_offset=1),
        report=tmp_path / "r.json",
    )


def test_round_trip_through_a_file_with_relative_paths(tmp_path):
    job = full_job(tmp_path)
    path = tmp_path / "job.json"
    job.save(path)
    data = json.loads(path.read_text())
    assert data["version"] == JOB_VERSION
    assert data["model"] == "m.onnx" and data["calibration"]["folders"] == ["c1", "c2"]
    assert load_job(path) == job


def test_paths_outside_the_job_folder_stay_absolute(tmp_path):
    job = Job(model=tmp_path / "elsewhere" / "m.onnx")
    d = job.to_dict(base_dir=tmp_path / "jobs")
    assert d["model"] == str(tmp_path / "elsewhere" / "m.onnx")


def test_missing_keys_take_defaults():
    job = job_from_dict({"version": 1, "model": "/x/m.onnx"})
    assert job.calibration == CalibrationSettings() and job.quantization.activation_type == "uint8"


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"calibration": {"max_images": "many"}}, "job.calibration.max_images"),
        ({"calibration": {"max_images": 0}}, "job.calibration.max_images"),
        ({"calibration": {"method": "magic"}}, "job.calibration.method"),
        ({"calibration": {"folderz": ["a"]}}, "job.calibration.folderz"),
        ({"quantization": {"per_channel": "yes"}}, "job.quantization.per_channel"),
        ({"preprocess": {"std": [1, 0, 1]}}, "job.preprocess.std"),
        ({"preprocess": {"mean": "big"}}, "job.preprocess.mean"),
        ({"preprocess": {"size": [224]}}, "job.preprocess.size"),
        ({"evaluation": {"labels_from": "csv"}}, "job.evaluation.labels_csv"),
        ({"evaluation": []}, "job.evaluation"),
        ({"extra": 1}, "job.extra"),
        ({"model": None}, "job.model"),
        ({"version": 99}, "job.version"),
        ({"version": "one"}, "job.version"),
    ],
)
def test_bad_fields_are_named(patch, field):
    data = {"version": 1, "model": "m.onnx"}
    data.update(patch)
    with pytest.raises(JobError) as err:
        job_from_dict(data)
    assert err.value.field == field


def test_future_version_says_to_update():
    with pytest.raises(JobError, match="newer than this"):
        job_from_dict({"version": JOB_VERSION + 1, "model": "m.onnx"})


def test_unreadable_job_files(tmp_path):
    with pytest.raises(JobError, match="does not exist"):
        load_job(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(JobError, match="not valid JSON"):
        load_job(bad)
