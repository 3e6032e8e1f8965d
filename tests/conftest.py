import os
from pathlib import Path

import pytest

from spotscape.datasets import simulate_tissue

DATA = Path(os.environ.get("SPOTSCAPE_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_data(relpath: str) -> Path:
    """A file from ../shared/data. Missing data is an error, never a silent skip."""
    p = DATA / relpath
    if not p.exists():
        pytest.fail(f"required dataset {p} is missing: tests read real data from ../shared/data "
                    "(set SPOTSCAPE_DATA to its location)", pytrace=False)
    return p


@pytest.fixture(scope="session")
def small_tissue():
    return simulate_tissue(n_spots=600, n_genes=300, n_domains=4, seed=3)
