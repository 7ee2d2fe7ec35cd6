"""data-view: held-out groups leave train and form the out-of-style check."""
from backend.cli.data_view import plan_view


def test_holdout_groups_leave_train_only():
    rows = [
        {"file": "a.npz", "split": "train", "group": "makehuman_basemesh"},
        {"file": "b.npz", "split": "train", "group": "q_b2b_Cow"},
        {"file": "c.npz", "split": "val", "group": "q_b2b_Dog"},
        {"file": "d.npz", "split": "test", "group": "q_mech_pack"},
        {"file": "e.npz", "split": "aux", "group": "x"},
    ]
    view = plan_view(rows, ["makehuman", "q_mech_pack"])
    assert view == {"train": ["b.npz"], "val": ["c.npz"], "test": ["d.npz"], "out_of_style": ["a.npz"]}
