"""Parameters SPDK has but spydk does not act on are accepted (SPDK's saved configs load)
and named in a warning on the target's log."""
from __future__ import annotations

from pathlib import Path

from spydk.testing import start_target


def test_accepted_parameters_without_effect_are_logged(tmp_path: Path) -> None:
    with start_target(tmp_path, config={"subsystems": []}, app="nvmf_tgt") as t:
        t.client.call("nvmf_create_transport", {"trtype": "TCP", "num_cqe": 4096, "no_srq": True,
                                                "max_queue_depth": 64})
        t.client.call("nvmf_create_subsystem", {"nqn": "nqn.2016-06.io.spdk:cnode9",
                                                "admin_label": "x", "enable_nssr": True})
        # Settings spydk honours are applied, and no warning names them.
        tr = t.client.call("nvmf_get_transports")[0]
        assert tr["max_queue_depth"] == 64
        t.stop()
        text = t.log_text()
    assert "nvmf_create_transport: parameters no_srq, num_cqe accepted for compatibility" in text
    assert "nvmf_create_subsystem: parameters admin_label, enable_nssr accepted" in text
    assert "max_queue_depth accepted" not in text
