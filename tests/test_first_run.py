"""A newcomer's first runs: no dead-end run folders, "the newest run" means the newest finished one, and K is
checked against the number of images before anything is created (issue 10, items 2 and 4)."""

from __future__ import annotations

import json
import shutil

import pytest
from rich.console import Console

from i2icurate.commands.discover import discover
from i2icurate.errors import UserError
from i2icurate.runs import FINISHED_FILE, latest_run, write_json
from tests.cli_helpers import TOY, cli, copy_images, run_folders


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # long temporary paths stay on one line of captured output


# failed and unfinished runs


def test_empty_folder_leaves_no_run_and_newest_means_finished(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    project = tmp_path / "runs"
    code, out, err = cli(capsys, "discover", str(tmp_path / "empty"), "-k", "3", "--project", str(project))
    assert code == 2 and err.startswith("error: no images found") and "run folder" not in out
    assert run_folders(project) == []
    code, _, err = cli(capsys, "translate", "--from", "1", "--to", "2", "--project", str(project))
    assert code == 2 and err.strip() == f"error: no finished discover run found under {project / 'discover'}; " \
                                        "pass a run folder"
    code, _, err = cli(capsys, "review", "--project", str(project), "--no-launch")
    assert code == 2 and "no finished discover run" in err


def test_unreadable_images_leave_no_run(animal_folder, tmp_path, capsys):
    source = copy_images(animal_folder, tmp_path / "photos", 1)
    (source / "broken.png").write_bytes(b"this is not a PNG")
    project = tmp_path / "runs"
    code, out, err = cli(capsys, "discover", str(source), "-k", "2", "--project", str(project), "--workers", "1")
    assert code == 2 and "only 1 readable image(s)" in err
    assert run_folders(project) == []


def test_unfinished_runs_are_passed_over_and_named(toy_discover_run, tmp_path, capsys):
    project = tmp_path / "runs"
    finished = project / "discover" / "exp1"
    shutil.copytree(toy_discover_run, finished, ignore=shutil.ignore_patterns("tb"))
    unfinished = project / "discover" / "exp2"  # newer, but interrupted: trained, never exported
    shutil.copytree(toy_discover_run, unfinished, ignore=shutil.ignore_patterns("tb", FINISHED_FILE))
    assert latest_run(project, "discover") == finished
    for args in (["translate", "--from", "0", "--to", "1", "--run", str(unfinished)],
                 ["review", str(unfinished), "--no-launch"], ["sync", str(unfinished)]):
        code, _, err = cli(capsys, *args)
        assert code == 2, args
        assert err.strip() == (f"error: {unfinished} is an unfinished discover run (no summary.json); finish it with "
                               f"`i2icurate discover --resume {unfinished}`"), args
    code, _, err = cli(capsys, "export", str(unfinished))  # training is complete: export finishes it
    assert code == 0, err
    assert (unfinished / FINISHED_FILE).is_file()
    assert latest_run(project, "discover") == unfinished


def test_export_refuses_a_run_stopped_part_way(toy_discover_run, tmp_path, capsys):
    run = tmp_path / "cut1"
    shutil.copytree(toy_discover_run, run, ignore=shutil.ignore_patterns("tb", FINISHED_FILE))
    config = json.loads((run / "config.json").read_text())
    write_json(run / "config.json", {**config, "iters": 20})  # it stopped at 12 of 20
    code, _, err = cli(capsys, "export", str(run))
    assert code == 2 and err.strip() == (f"error: {run} stopped at iteration 12/20; finish it with "
                                         f"`i2icurate discover --resume {run}`")


def test_a_failure_before_the_first_checkpoint_removes_the_run(toy_discover_run, animal_folder, tmp_path):
    with pytest.raises(UserError, match="do not match this run's options"):
        discover(animal_folder, from_run=str(toy_discover_run), style_dim=16, iters=2, project=str(tmp_path / "r"),
                 console=Console(quiet=True), workers=1)
    assert run_folders(tmp_path / "r") == []


# K against the number of images


def test_more_clusters_than_images_is_refused_before_anything(animal_folder, tmp_path, capsys):
    source = copy_images(animal_folder, tmp_path / "few", 3)
    project = tmp_path / "runs"
    code, out, err = cli(capsys, "discover", str(source), "-k", "10", *TOY, "--iters", "2", "--project",
                          str(project))
    assert code == 2
    assert err.strip() == f"error: -k 10 asks for more clusters than the 3 image(s) in {source}; use -k 3 or fewer " \
                          "(or add images)"
    assert run_folders(project) == [] and "TUNIT" not in out


def test_fewer_than_two_images_per_cluster_warns(small_run):
    _, printed = small_run
    assert "-k 7 for 12 images: fewer than 2 images per cluster on average" in printed
    assert printed.index("-k 7 for 12 images") < printed.index("TUNIT:")
