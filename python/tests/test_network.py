"""A network community inside this process: an edge and three cores
started with launch_edge/launch_core, billed through send()."""

import time
from pathlib import Path

import pytest

import private_billing as pb
from private_billing.messages import (
    ContextMessage,
    DataMessage,
    RosterMessage,
    GetBillMessage,
    StatusMessage,
    send,
)

from conftest import community_dict


def write_configs(tmp: Path, ids):
    """Keys and edge.toml; returns the operator's and members' node ids."""
    edge_id_file = tmp / "edge.key"
    pb.keygen(edge_id_file)
    operator = pb.keygen(tmp / "operator.key")
    nodes = {h: pb.keygen(tmp / f"{h}.key") for h in ids}
    members = "".join(
        f'[[members]]\nmember = "{h}"\nnode = "{n}"\n' for h, n in nodes.items()
    )
    (tmp / "edge.toml").write_text(
        'community = "py-test"\n'
        'listen = "tcp://127.0.0.1:0"\n'
        f'data_dir = "{tmp / "edge"}"\n'
        f'key_file = "{edge_id_file}"\n'
        "min_members = 3\n"
        f'operators = ["{operator}"]\n' + members
    )
    return operator, nodes


def core_config(tmp: Path, h: str, edge: pb.ServerHandle, operator: str) -> Path:
    path = tmp / f"{h}.toml"
    path.write_text(
        f'member = "{h}"\n'
        'community = "py-test"\n'
        f'edge = "{edge.endpoint}"\n'
        f'edge_node = "{edge.node_id}"\n'
        f'operator = "{operator}"\n'
        'listen = "tcp://127.0.0.1:0"\n'
        f'data_dir = "{tmp / h}"\n'
        f'key_file = "{tmp / (h + ".key")}"\n'
        "poll_millis = 100\n"
    )
    return path


def wait_for(what, check, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_network_community(tmp_path):
    c = community_dict(households=3, slots=6, seed=21, cycle_id=3)
    ids = [str(h["id"]) for h in c["households"]]
    operator, nodes = write_configs(tmp_path, ids)
    with pb.launch_edge(tmp_path / "edge.toml") as edge:
        assert edge.kind == "edge" and edge.endpoint.startswith("tcp://127.0.0.1:")
        cores = {h: pb.launch_core(core_config(tmp_path, h, edge, operator)) for h in ids}
        try:
            for h, core in cores.items():
                wait_for(f"{h} to join", lambda: send(StatusMessage(), core.endpoint)["joined"])
            # The operator signs the member list; a member's key may not.
            with pytest.raises(pb.RefusedError):
                send(RosterMessage(nodes), edge.endpoint, key=tmp_path / (ids[0] + ".key"),
                     edge_id=edge.node_id, community="py-test")
            fingerprint = send(RosterMessage(nodes), edge.endpoint,
                               key=tmp_path / "operator.key", edge_id=edge.node_id,
                               community="py-test")
            assert len(fingerprint) == 19
            ctx = pb.CycleContext(c["cycle_id"], **c["prices"])
            with pytest.raises(TypeError, match="signed"):
                send(ContextMessage(None, ctx), edge.endpoint)
            send(ContextMessage(None, ctx), edge.endpoint, key=tmp_path / "operator.key",
                 edge_id=edge.node_id, community="py-test")
            data = {}
            for hh in c["households"]:
                h = str(hh["id"])
                data[h] = pb.Data(ctx.cycle_id, promises_kwh=hh["promises_kwh"],
                                  actual_kwh=hh["actual_kwh"])
                accepted = send(DataMessage(None, data[h]), cores[h].endpoint)
                assert accepted["cycle_id"] == ctx.cycle_id and accepted["slots"] == 6
            expected = pb.plaintext_bills(ctx, data)
            for h, core in cores.items():
                bill = wait_for(f"{h}'s bill",
                                lambda: send(GetBillMessage(None, ctx.cycle_id), core.endpoint))
                assert bill == expected[h]
                assert bill.total == expected[h].total
            # Refusals: a second, different submission; an unsigned-by-operator context.
            with pytest.raises(pb.RefusedError):
                send(DataMessage(pb.Data(ctx.cycle_id, promises_kwh=[0] * 6, actual_kwh=[0] * 6)),
                     cores[ids[0]].endpoint)
            with pytest.raises(pb.RefusedError):
                send(ContextMessage(pb.CycleContext(9, **c["prices"])), edge.endpoint,
                     key=tmp_path / (ids[0] + ".key"), edge_id=edge.node_id,
                     community="py-test")
        finally:
            for core in cores.values():
                core.stop()
        assert not cores[ids[0]].running
    assert not edge.running
    with pytest.raises(pb.NetworkError):
        send(GetBillMessage(1), "tcp://127.0.0.1:9", timeout=1)


def test_launch_refuses_bad_configuration(tmp_path):
    bad = tmp_path / "edge.toml"
    bad.write_text("community = 3\n")
    with pytest.raises(ValueError):
        pb.launch_edge(bad)
    with pytest.raises(ValueError):
        pb.launch_core(tmp_path / "missing.toml")
