"""Fixtures shared by every test folder: the user-data folder a shop would bring."""

from __future__ import annotations

import pytest

from crossrec_datasets.synthetic import make_shop


@pytest.fixture(scope="session")
def shop_folder(tmp_path_factory):
    """A user-data folder: 40 items with generated images and query photos, 30 users, 2,000
    interactions (string SKUs and user ids), written by the synthetic shop generator."""
    return make_shop(tmp_path_factory.mktemp("shop") / "shop", n_items=40, n_users=30, n_interactions=2_000,
                     seed=7, images=True)
