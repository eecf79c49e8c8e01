"""benchmarks/readme_pictures.py: a run's front and bit map, redrawn smaller when over the size limit."""
from tests.paths import load_benchmark

genome_7b = load_benchmark("genome_7b")
readme_pictures = load_benchmark("readme_pictures")
PNG = b"\x89PNG\r\n\x1a\n"


def test_draw_run_writes_both_pictures_and_shrinks_one_over_the_limit(tmp_path, capsys):
    run = tmp_path / "run"
    genome_7b.main(["--pop", "8", "--generations", "2", "--out", str(run), "--points", "2"])
    capsys.readouterr()
    readme_pictures.draw_run(run, tmp_path / "front.png", tmp_path / "bitmap.png", max_kb=60)
    printed = capsys.readouterr().out.splitlines()
    assert all((tmp_path / name).read_bytes().startswith(PNG) for name in ("front.png", "bitmap.png"))
    assert len(printed) == 2 and "at 110 dpi" not in printed[1]  # the 226-layer bit map is over 60 KB at 110 dpi
