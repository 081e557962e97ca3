import json
import subprocess
import sys
import time


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "xdistill", *args], capture_output=True, text=True, timeout=timeout)


def test_help_is_fast_and_imports_no_torch():
    start = time.perf_counter()
    result = run("--help")
    assert result.returncode == 0 and "demo" in result.stdout
    assert time.perf_counter() - start < 5
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, xdistill.cli; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "False"


def test_bad_dataset_is_one_line_exit_2():
    result = run("demo", "--dataset", "ucr:NoSuchSet")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "NoSuchSet" in result.stderr
    result = run("demo", "--dataset", "nope")
    assert result.returncode == 2 and "unknown dataset 'nope'" in result.stderr


def test_bad_epochs_is_an_argument_error():
    result = run("demo", "--epochs", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr


def test_demo_runs_and_writes_figures(tmp_path):
    out = tmp_path / "demo.json"
    result = run("demo", "--epochs", "3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "explanation alignment" in result.stdout
    report = json.loads(out.read_text())
    ig = report["integrated_gradients"]
    assert -1 <= ig["saliency_spearman"]["mean"] <= 1 and ig["saliency_spearman"]["n"] == 150
    assert report["occlusion"]["compression"] > 10


def test_list_shows_registries():
    result = run("list")
    assert result.returncode == 0 and "GunPoint" in result.stdout and "integrated_gradients" in result.stdout
    assert "tsd_published" in result.stdout and "rationale_kl" in result.stdout and "tsd_paper" in result.stdout
