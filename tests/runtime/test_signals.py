"""Signals: SIGTERM stops a search like Ctrl-C (front written, exit 143), a killed parent
leaves no worker process behind, and an interrupt before anything is finished exits 130
saying what was kept."""
import os
import signal
import subprocess
import sys
import time

from qaev.cli.main import main


def _search(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "qaev.cli", "search", "--pop", "16", "--generations", "200",
                             "--out", str(out), "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait(out, proc, n):
    log = out / "evaluations.jsonl"
    deadline = time.time() + 180
    while (not log.exists() or len(log.read_text().splitlines()) < n) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)


def _children(pid: int) -> set[int]:
    """Every process descended from ``pid`` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def test_sigterm_writes_the_front_and_exits_143(tmp_path):
    out = tmp_path / "run"
    proc = _search(out)
    _wait(out, proc, 40)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted" in err and "Traceback" not in err
    assert (out / "front.json").is_file()


def test_a_killed_parent_leaves_no_worker_behind(tmp_path):
    out = tmp_path / "run"
    proc = _search(out, "--workers", "2")
    try:
        _wait(out, proc, 8)
        children = _children(proc.pid)
        assert children, "no worker processes were found: the test shows nothing"
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.time() + 15
        while _alive(children) and time.time() < deadline:
            time.sleep(0.2)
        left = _alive(children)
    finally:
        for pid in _alive(_children(proc.pid)) | _alive(locals().get("children", set())):
            os.kill(pid, signal.SIGKILL)  # started by this test
    assert not left, f"orphaned processes: {sorted(left)}"


def test_sigterm_with_workers_stops_them_too(tmp_path):
    out = tmp_path / "run"
    proc = _search(out, "--workers", "2")
    _wait(out, proc, 8)
    children = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    deadline = time.time() + 15
    while _alive(children) and time.time() < deadline:
        time.sleep(0.2)
    left = _alive(children)
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # started by this test
    assert proc.returncode == 143, err
    assert not left, f"orphaned processes: {sorted(left)}"


def test_ctrl_c_before_the_first_evaluation_exits_130_saying_what_was_kept(tmp_path, capsys, monkeypatch):
    def interrupted(self, configs):
        raise KeyboardInterrupt

    monkeypatch.setattr("qaev.search.problem.QuantizationProblem.evaluate_many", interrupted)
    code = main(["search", "--pop", "4", "--generations", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 130, err
    assert "before any candidate finished" in err and "--resume" in err and "Traceback" not in err


def test_ctrl_c_while_a_screening_search_finishes_exits_130(tmp_path, capsys, monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr("qaev.search.problem.QuantizationProblem.finish", interrupted)
    code = main(["search", "--pop", "6", "--generations", "2", "--staged", "end", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 130, err
    assert "--resume" in err


def test_ctrl_c_while_loading_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("qaev.runtime.search_run.build_problem", interrupted)
    out = tmp_path / "run"
    code = main(["search", "--pop", "4", "--generations", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err, err
    assert not out.exists()  # the same command runs again as it was
