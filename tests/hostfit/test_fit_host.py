"""``qaev hardware fit-host``: a table fitted on this machine, every figure saying where it
comes from, usable as --hardware FILE."""
import math

from qaev.cli.main import main
from qaev.hardware import load_table


def test_fit_host_writes_a_table_whose_fitted_figures_are_the_fits(tmp_path, capsys):
    out = tmp_path / "mine.yaml"
    assert main(["hardware", "fit-host", "--problem", "digits", "--configs", "6", "--repeats", "2",
                 "-o", str(out), "--name", "mine"]) == 0
    printed = capsys.readouterr().out
    fitted = dict(line.split()[1:3] for line in printed.splitlines() if line.startswith("  fitted "))
    assert fitted, printed  # the fit identified at least one figure
    table, shipped = load_table(out), load_table("host")
    assert table.name == "mine"
    for field, value in fitted.items():
        section, _, pair = field.partition(".")
        quantity = getattr(table, section)[pair] if pair else getattr(table, section)
        assert math.isclose(quantity.value, float(value), rel_tol=1e-2)
        assert "fitted on this machine" in quantity.source and "fit-host --problem digits" in quantity.source
    for pair, quantity in table.peak_macs_per_s.items():
        if f"peak_macs_per_s.{pair}" not in fitted:
            assert quantity.value == shipped.peak_macs_per_s[pair].value and "another machine" in quantity.source
    assert all("another machine" in q.source or "not timed" in q.source for q in table.energy_per_mac.values())
    assert f"--hardware {out}" in printed
