"""The compose stack's broker config and ACL, enforced by the real mosquitto binary.

Unauthorised QoS 1 publishes are acknowledged with reason code 0x87 (Not authorized) under
MQTT v5 and silently dropped; each "nobody receives it" assertion is closed by a sentinel
message published after it, so the wait is bounded and needs no sleep.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokeracl import local_source_filters
from tests.integration.deploy_broker import (
    DEPLOY,
    PASSWORDS,
    Client,
    DeployBroker,
    client,
    deploy_env,
    run_entrypoint,
    running_broker,
)

NOT_AUTHORIZED = 0x87
BIN1_TELEMETRY = "facility/ewaste/ewaste_bin/bin-001/telemetry"
BIN2_TELEMETRY = "facility/ewaste/ewaste_bin/bin-002/telemetry"
BIN2_STATUS = "facility/ewaste/ewaste_bin/bin-002/status"
METER_TELEMETRY = "facility/nzc/energy_meter/nzc-meter-1/telemetry"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeployBroker]:
    with running_broker(tmp_path_factory.mktemp("deploy-mosquitto")) as running:
        yield running


def test_anonymous_connection_is_refused(broker: DeployBroker) -> None:
    anonymous = Client(broker.port, None)
    rc = anonymous.connect()
    anonymous.close()
    assert rc.is_failure
    assert rc.value in (0x86, 0x87)  # bad user name or password / not authorised


def test_wrong_password_is_refused(broker: DeployBroker) -> None:
    intruder = Client(broker.port, "bin-001", "guessed")
    rc = intruder.connect()
    intruder.close()
    assert rc.is_failure


def test_device_publishes_its_own_topics_only(broker: DeployBroker) -> None:
    with client(broker.port, "svc.operator") as watcher, client(broker.port, "bin-001") as bin1:
        assert not watcher.subscribe("facility/#").is_failure
        # Another device's telemetry and status, and the other kinds' topics: refused.
        assert bin1.publish(BIN2_TELEMETRY, b'{"forged": 1}').value == NOT_AUTHORIZED
        assert bin1.publish(BIN2_STATUS, b"offline", retain=True).value == NOT_AUTHORIZED
        assert bin1.publish("facility/alerts/bin_full/ewaste/bin-002").value == NOT_AUTHORIZED
        assert bin1.publish("facility/dispatch/requests").value == NOT_AUTHORIZED
        # Its own topics: accepted and delivered.
        assert not bin1.publish("facility/ewaste/ewaste_bin/bin-001/status", b"online").is_failure
        assert not bin1.publish(BIN1_TELEMETRY, b'{"sentinel": 1}').is_failure
        received = watcher.wait_for(BIN1_TELEMETRY)
    topics = {topic for topic, _ in received}
    assert BIN2_TELEMETRY not in topics
    assert BIN2_STATUS not in topics
    assert "facility/ewaste/ewaste_bin/bin-001/status" in topics


def test_device_cannot_read_other_devices(broker: DeployBroker) -> None:
    with client(broker.port, "bin-002") as bin2, client(broker.port, "nzc-meter-1") as meter:
        # Subscriptions outside its own status are refused or deliver nothing.
        for topic_filter in ("facility/#", "facility/+/+/+/telemetry", METER_TELEMETRY):
            bin2.subscribe(topic_filter)
        assert not bin2.subscribe(BIN2_STATUS).is_failure
        assert not meter.publish(METER_TELEMETRY, b'{"pv_power_w": 1}').is_failure
        assert not bin2.publish(BIN2_STATUS, b"online").is_failure  # sentinel
        received = bin2.wait_for(BIN2_STATUS)
    # (Its own status may arrive twice: once per matching subscription.)
    assert {topic for topic, _ in received} == {BIN2_STATUS}


def test_ingest_reads_telemetry_and_writes_dead_letters_only(broker: DeployBroker) -> None:
    with (
        client(broker.port, "svc.operator") as watcher,
        client(broker.port, "svc.ingest") as ingest,
        client(broker.port, "bin-001") as bin1,
    ):
        assert not watcher.subscribe("facility/#").is_failure
        assert not ingest.subscribe("facility/+/+/+/telemetry").is_failure
        assert not bin1.publish(BIN1_TELEMETRY, b'{"weight_kg": 3}').is_failure
        assert ingest.wait_for(BIN1_TELEMETRY)[0] == (BIN1_TELEMETRY, b'{"weight_kg": 3}')

        forbidden = [
            BIN1_TELEMETRY,  # posing as a device
            "facility/alerts/bin_full/ewaste/bin-001",
            "facility/alerts/active/bin_full/ewaste/bin-001",
            "facility/dispatch/requests",
            "facility/deadletter/alerts",
        ]
        for topic in forbidden:
            assert ingest.publish(topic, b"x").value == NOT_AUTHORIZED, topic
        assert not ingest.publish("facility/deadletter/ingest", b"{}").is_failure  # sentinel
        seen = [topic for topic, _ in watcher.wait_for("facility/deadletter/ingest")]
    assert seen == [BIN1_TELEMETRY, "facility/deadletter/ingest"]


def test_alerts_and_simulator_get_what_their_flows_need(broker: DeployBroker) -> None:
    with (
        client(broker.port, "svc.alerts") as alerts,
        client(broker.simulator_port, "svc.simulator") as simulator,
    ):
        assert not alerts.subscribe("facility/dispatch/+/status").is_failure
        assert not simulator.subscribe("facility/dispatch/requests").is_failure
        # Alerts: alert events, retained active alerts, dispatch requests.
        for topic in (
            "facility/alerts/bin_full/ewaste/bin-001",
            "facility/alerts/active/bin_full/ewaste/bin-001",
            "facility/dispatch/requests",
            "facility/deadletter/alerts",
        ):
            assert not alerts.publish(topic, b"{}").is_failure, topic
        assert alerts.publish(BIN1_TELEMETRY).value == NOT_AUTHORIZED
        assert alerts.publish("facility/deadletter/ingest").value == NOT_AUTHORIZED
        simulator.wait_for("facility/dispatch/requests")
        # Simulator: any device's topics (it simulates them all) and dispatch progress.
        assert not simulator.publish(METER_TELEMETRY).is_failure
        assert not simulator.publish(BIN2_STATUS, b"online").is_failure
        assert not simulator.publish("facility/dispatch/d-1/status", b"{}").is_failure
        assert simulator.publish("facility/dispatch/requests").value == NOT_AUTHORIZED
        assert simulator.publish("facility/alerts/x/ewaste/bin-001").value == NOT_AUTHORIZED
        alerts.wait_for("facility/dispatch/d-1/status")


def test_the_bridge_publishes_registered_devices_telemetry_and_its_dead_letters_only(
    broker: DeployBroker,
) -> None:
    """svc.bridge speaks for foreign devices: a registered device's telemetry, nothing else."""
    forbidden = [
        BIN2_STATUS,  # status is the device's own (its Last Will), never the bridge's
        "facility/ewaste/ewaste_bin/bin-999/telemetry",  # not in the registry
        "facility/nzc/ewaste_bin/bin-001/telemetry",  # a registered id at another site
        "facility/alerts/_dispatch/bin-001/telemetry",  # five levels: a retained dispatch record
        "facility/alerts/bin_full/ewaste/bin-001",
        "facility/alerts/active/bin_full/ewaste/bin-001",
        "facility/dispatch/requests",
        "facility/dispatch/d-1/status",
        "facility/deadletter/ingest",
        "facility/deadletter/alerts",
        "facility/health/broker",
    ]
    with (
        client(broker.port, "svc.operator") as watcher,
        client(broker.port, "svc.bridge") as bridge,
    ):
        assert not watcher.subscribe("facility/#").is_failure
        for topic in forbidden:
            assert bridge.publish(topic, b'{"forged": 1}').value == NOT_AUTHORIZED, topic
        assert not bridge.publish(METER_TELEMETRY, b'{"grid_power_w": 1}').is_failure
        assert not bridge.publish(BIN1_TELEMETRY, b'{"fill_pct": 5}').is_failure
        assert not bridge.publish("facility/deadletter/bridge", b"{}").is_failure  # sentinel
        received = watcher.wait_for("facility/deadletter/bridge")
    assert [topic for topic, _ in received] == [
        METER_TELEMETRY,
        BIN1_TELEMETRY,
        "facility/deadletter/bridge",
    ]


def test_the_bridge_user_exists_only_when_its_password_is_set(tmp_path: Path) -> None:
    without = deploy_env() | {"MQTT_BRIDGE_PASSWORD": ""}
    assert run_entrypoint(tmp_path / "a", without).returncode == 0
    assert "svc.bridge:" not in (tmp_path / "a" / "passwd").read_text()
    assert run_entrypoint(tmp_path / "b", deploy_env()).returncode == 0
    assert "svc.bridge:" in (tmp_path / "b" / "passwd").read_text()
    # ... on the published listeners only, never on the simulator's.
    assert "svc.bridge" not in (tmp_path / "b" / "passwd-simulator").read_text()


def test_ingest_session_survives_broker_restart(tmp_path: Path) -> None:
    """Persistence: telemetry queued for the offline ingest session outlives a broker restart."""
    with running_broker(tmp_path) as broker:
        ingest = Client(
            broker.port, "svc.ingest", PASSWORDS["svc.ingest"], client_id="ingest", persistent=True
        )
        assert not ingest.connect().is_failure
        assert not ingest.subscribe("facility/+/+/+/telemetry").is_failure
        ingest.close()
        with client(broker.port, "bin-001") as bin1:
            for seq in range(5):
                assert not bin1.publish(BIN1_TELEMETRY, f'{{"seq": {seq}}}'.encode()).is_failure
        broker.stop()
        broker.start()
        again = Client(
            broker.port, "svc.ingest", PASSWORDS["svc.ingest"], client_id="ingest", persistent=True
        )
        assert not again.connect().is_failure
        try:
            with again.got_message:
                assert again.got_message.wait_for(lambda: len(again.messages) >= 5, 15.0)
            payloads = [payload for _, payload in again.messages]
        finally:
            again.close()
    assert payloads == [f'{{"seq": {seq}}}'.encode() for seq in range(5)]


def test_entrypoint_refuses_to_start_without_service_passwords(tmp_path: Path) -> None:
    env = deploy_env()
    del env["MQTT_ALERTS_PASSWORD"]
    result = run_entrypoint(tmp_path / "run", env)
    assert result.returncode == 2
    assert "MQTT_ALERTS_PASSWORD" in result.stderr
    assert not (tmp_path / "run" / "passwd").exists()


def test_entrypoint_rejects_device_usernames_that_could_escape_the_acl(tmp_path: Path) -> None:
    env = {**deploy_env(), "MQTT_DEVICE_CREDENTIALS": "bin-001:ok,evil/+:pw"}
    result = run_entrypoint(tmp_path / "run", env)
    assert result.returncode == 2
    assert "invalid device id" in result.stderr


def test_entrypoint_rewrites_the_acl_for_another_topic_prefix(tmp_path: Path) -> None:
    env = {**deploy_env(), "MQTT_TOPIC_PREFIX": "gm/climate"}
    result = run_entrypoint(tmp_path / "run", env)
    assert result.returncode == 0, result.stderr
    acl = (tmp_path / "run" / "acl").read_text()
    # The bridge's reads of sources on our broker are their own (foreign) topics: no prefix.
    reads, _ = local_source_filters(DEPLOY.parents[1] / "config" / "sources.yaml")
    foreign = {f"topic read {f}" for f in reads}
    rules = [line for line in acl.splitlines() if line.startswith(("topic", "pattern"))]
    assert rules and foreign <= set(rules)
    assert all(" gm/climate/" in line for line in rules if line not in foreign)
    # (Was the `pattern write P/+/+/%u/telemetry` of issue 11: now each device's literal topic.)
    assert "topic write gm/climate/ewaste/ewaste_bin/bin-001/telemetry" in rules
    passwd = (tmp_path / "run" / "passwd").read_text()
    # Hashed, never the plain secret.
    assert "svc.ingest:$7$" in passwd
    assert PASSWORDS["svc.ingest"] not in passwd


def run_healthcheck(broker: DeployBroker) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MOSQUITTO_RUN_DIR": str(broker.run_dir),
        "MOSQUITTO_HEALTH_PORT": str(broker.port),
    }
    script = DEPLOY / "healthcheck.sh"
    return subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_container_healthcheck_needs_a_live_authenticating_broker(tmp_path: Path) -> None:
    with running_broker(tmp_path) as broker:
        healthy = run_healthcheck(broker)
        health_password = (broker.run_dir / "health.pw").read_text().strip()
        with client(broker.port, "svc.operator") as watcher:
            assert not watcher.subscribe("facility/#").is_failure
            prober = Client(broker.port, "svc.health", health_password)
            assert not prober.connect().is_failure
            try:
                # The health user can publish its probe topic and nothing else.
                assert prober.publish(BIN1_TELEMETRY).value == NOT_AUTHORIZED
                assert not prober.publish("facility/health/broker", b"ok").is_failure
            finally:
                prober.close()
            seen = {topic for topic, _ in watcher.wait_for("facility/health/broker")}
        broker.stop()
        stopped = run_healthcheck(broker)
    assert healthy.returncode == 0, healthy.stderr
    assert seen == {"facility/health/broker"}
    assert stopped.returncode != 0


# --- issue 11: a device credential can only ever be that device ---------------------------

QUEUED = 50


def ingest_session(broker: DeployBroker, client_id: str = "facility-ingest") -> Client:
    return Client(
        broker.port,
        "svc.ingest",
        PASSWORDS["svc.ingest"],
        client_id=client_id,
        persistent=True,
    )


@pytest.mark.parametrize("stolen_id", ["facility-ingest", "svc.ingest"])
@pytest.mark.parametrize("resume", [False, True], ids=["wipe", "resume"])
def test_a_device_credential_cannot_take_over_ingests_queued_session(
    tmp_path: Path, stolen_id: str, resume: bool
) -> None:
    """Readings queued while ingest is away all reach ingest, whoever used its client id.

    Mosquitto binds a session to a client id: on the old config a device connecting as
    `facility-ingest` wiped ingest's session (clean start) or drained it (resume).
    """
    with running_broker(tmp_path) as broker:
        ingest = ingest_session(broker)
        assert not ingest.connect().is_failure
        assert not ingest.subscribe("facility/+/+/+/telemetry").is_failure
        ingest.close()
        with client(broker.port, "bin-001") as bin1:
            for seq in range(QUEUED):
                assert not bin1.publish(BIN1_TELEMETRY, f'{{"seq": {seq}}}'.encode()).is_failure
        attacker = Client(
            broker.port, "bin-002", PASSWORDS["bin-002"], client_id=stolen_id, persistent=resume
        )
        assert not attacker.connect().is_failure
        attacker.close()
        back = ingest_session(broker)
        assert not back.connect().is_failure
        try:
            with back.got_message:
                back.got_message.wait_for(lambda: len(back.messages) >= QUEUED, 15.0)
            payloads = [payload for _, payload in back.messages]
        finally:
            back.close()
    assert attacker.messages == []
    assert payloads == [f'{{"seq": {seq}}}'.encode() for seq in range(QUEUED)]


@pytest.mark.parametrize("user", ["svc.ingest", "svc.alerts"])
def test_a_device_credential_using_a_service_client_id_does_not_kick_it_off(
    broker: DeployBroker, user: str
) -> None:
    program = user.removeprefix("svc.")
    service = Client(broker.port, user, PASSWORDS[user], client_id=f"facility-{program}")
    assert not service.connect().is_failure
    try:
        assert not service.subscribe("facility/+/+/+/telemetry").is_failure
        for stolen_id in (f"facility-{program}", user):
            attacker = Client(broker.port, "bin-002", PASSWORDS["bin-002"], client_id=stolen_id)
            assert not attacker.connect().is_failure
            attacker.close()
        # The service's connection is the same one, still subscribed: a sentinel arrives.
        with client(broker.port, "bin-001") as bin1:
            assert not bin1.publish(BIN1_TELEMETRY, b'{"sentinel": 1}').is_failure
        service.wait_for(BIN1_TELEMETRY)
        assert not service.disconnected.is_set()
    finally:
        service.close()


def test_ingest_replicas_have_users_of_their_own_and_never_take_each_others_session(
    tmp_path: Path,
) -> None:
    replica_password = "replica-2-secret"
    with running_broker(
        tmp_path, MQTT_INGEST_REPLICA_CREDENTIALS=f"svc.ingest.2:{replica_password}"
    ) as broker:
        first = ingest_session(broker)
        # Same configured client id: the broker names each session after its user instead.
        second = Client(
            broker.port,
            "svc.ingest.2",
            replica_password,
            client_id="facility-ingest",
            persistent=True,
        )
        second.got_message = first.got_message  # one condition for both replicas' messages
        assert not first.connect().is_failure
        assert not second.connect().is_failure
        try:
            share = "$share/ingest/facility/+/+/+/telemetry"
            assert not first.subscribe(share).is_failure
            assert not second.subscribe(share).is_failure  # the replica's ACL is ingest's
            assert second.publish(BIN1_TELEMETRY).value == NOT_AUTHORIZED
            with client(broker.port, "bin-001") as bin1:
                for seq in range(10):
                    assert not bin1.publish(BIN1_TELEMETRY, f"{seq}".encode()).is_failure
            with first.got_message:
                first.got_message.wait_for(
                    lambda: len(first.messages) + len(second.messages) >= 10, 15.0
                )
            kicked = first.disconnected.is_set() or second.disconnected.is_set()
        finally:
            first.close()
            second.close()
    # Both stayed connected (on the old config the second connect kicked the first off) and
    # shared the readings between them.
    assert not kicked
    assert len(first.messages) + len(second.messages) == 10
    assert first.messages and second.messages


def test_a_device_publishes_only_as_its_registered_site_and_kind(broker: DeployBroker) -> None:
    """bin-001 is (ewaste, ewaste_bin): other sites, kinds and service namespaces are refused."""
    forged = [
        "facility/nzc/ewaste_bin/bin-001/telemetry",  # another site
        "facility/ewaste/energy_meter/bin-001/telemetry",  # another kind
        "facility/fake-site-1/ewaste_bin/bin-001/status",
        "facility/alerts/_dispatch/bin-001/telemetry",  # a retained dispatch record
        "facility/dispatch/x/bin-001/status",  # a dispatch status
        "facility/alerts/active/bin-001/status",
    ]
    with client(broker.port, "svc.operator") as watcher, client(broker.port, "bin-001") as bin1:
        assert not watcher.subscribe("facility/#").is_failure
        for topic in forged:
            assert bin1.publish(topic, b'{"forged": 1}').value == NOT_AUTHORIZED, topic
        assert not bin1.publish("facility/ewaste/ewaste_bin/bin-001/status", b"online").is_failure
        assert not bin1.publish(BIN1_TELEMETRY, b'{"sentinel": 1}').is_failure
        received = watcher.wait_for(BIN1_TELEMETRY)
    assert [topic for topic, _ in received] == [
        "facility/ewaste/ewaste_bin/bin-001/status",
        BIN1_TELEMETRY,
    ]


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024], ids=["64KiB", "1MiB"])
def test_the_broker_refuses_oversized_publishes_and_normal_readings_still_flow(
    broker: DeployBroker, size: int
) -> None:
    with client(broker.port, "svc.ingest", client_id="size-check") as ingest:
        assert not ingest.subscribe("facility/+/+/+/telemetry").is_failure
        flooder = Client(broker.port, "bin-001", PASSWORDS["bin-001"], client_id="bin-001")
        assert not flooder.connect().is_failure
        try:
            ack = flooder.try_publish(BIN1_TELEMETRY, b"x" * size)
        finally:
            flooder.close()
        # Refused: the PUBACK reports an error, or the broker hung up on the sender.
        assert ack is None or ack.is_failure, ack
        with client(broker.port, "bin-001") as bin1:
            assert not bin1.publish(BIN1_TELEMETRY, b'{"weight_kg": 3}').is_failure
        received = ingest.wait_for(BIN1_TELEMETRY)
    assert received == [(BIN1_TELEMETRY, b'{"weight_kg": 3}')]


def test_mqtts_listener_from_make_env_certificates_accepts_a_verifying_device(
    tmp_path: Path,
) -> None:
    """`make env` makes a CA and server cert; the shipped TLS listener serves it on 8883."""
    make_env = DEPLOY.parents[1] / "scripts" / "make-env.sh"
    subprocess.run([str(make_env), str(tmp_path / ".env")], check=True, capture_output=True)
    tls_dir = tmp_path / "secrets" / "mqtt-tls"
    with running_broker(tmp_path / "broker", MQTT_TLS_DIR=str(tls_dir)) as broker:
        assert (broker.run_dir / "conf.d" / "tls.conf").is_file()
        with client(broker.port, "svc.operator") as watcher:
            assert not watcher.subscribe(BIN1_TELEMETRY).is_failure
            device = Client(
                broker.tls_port, "bin-001", PASSWORDS["bin-001"], ca_file=tls_dir / "ca.crt"
            )
            assert not device.connect().is_failure
            try:
                assert not device.publish(BIN1_TELEMETRY, b'{"over": "tls"}').is_failure
                # Same ACL on the TLS listener.
                assert device.publish(BIN2_TELEMETRY).value == NOT_AUTHORIZED
            finally:
                device.close()
            received = watcher.wait_for(BIN1_TELEMETRY)
    assert received == [(BIN1_TELEMETRY, b'{"over": "tls"}')]


def test_entrypoint_warns_about_a_device_missing_from_the_acl(tmp_path: Path) -> None:
    """Onboarding: credentials for an id not in config/devices.yaml (no `make acl`) log in to
    nothing; the entrypoint names it instead of leaving the device silently mute."""
    env = {**deploy_env(), "MQTT_DEVICE_CREDENTIALS": "bin-001:ok,ghost-9:pw"}
    result = run_entrypoint(tmp_path / "run", env)
    assert result.returncode == 0, result.stderr
    assert "device 'ghost-9' has credentials but no topics in the ACL" in result.stderr
    assert "bin-001" not in result.stderr
