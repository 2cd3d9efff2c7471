"""The cost estimate's arithmetic against figures computed by hand from registry/prices.yaml."""

from datetime import UTC, datetime, timedelta

import pytest

from arc_reactor.core.cost import (
    HeadUsage,
    Machine,
    PriceTableInvalid,
    TaskUsage,
    attempt_cost,
    estimate,
    load_prices,
    parse_machine,
    region_of,
)

HOUR = 3600.0


def usage(machine="n2-standard-4", spot=True, preempted=False, own_vm=True, hours=1.0, attempts=1, zone=None):
    return TaskUsage(machine, zone, spot, preempted, False, own_vm, attempts, hours * HOUR)


def test_machine_types_are_priced_by_their_vcpus_and_memory():
    assert parse_machine("n2-standard-4") == Machine("n2", 4, 16.0)
    assert parse_machine("n1-highmem-8") == Machine("n1", 8, 52.0)
    assert parse_machine("e2-highcpu-16") == Machine("e2", 16, 16.0)
    assert parse_machine("n2-custom-6-24576") == Machine("n2", 6, 24.0)
    assert parse_machine("custom-2-7680") == Machine("n1", 2, 7.5)  # N1's custom types have no prefix
    assert (
        parse_machine("e2-medium") is None and parse_machine(None) is None and parse_machine("a2-x") is None
    )
    assert region_of("europe-west1-b", "us-central1") == "europe-west1"
    assert region_of(None, "us-central1") == "us-central1"


def test_hand_computed_figures():
    table = load_prices()
    # n2-standard-4 Spot in us-central1: 4 x 0.007650 + 16 x 0.001025 = 0.047 per hour.
    assert table.hourly(Machine("n2", 4, 16.0), "us-central1", spot=True) == pytest.approx(0.047)
    # n2-highmem-2 on-demand in europe-west1: 2 x 0.034773 + 16 x 0.004661 = 0.144122 per hour.
    assert table.hourly(parse_machine("n2-highmem-2"), "europe-west1", spot=False) == pytest.approx(0.144122)
    # The head job, e2-standard-2 Spot: 2 x 0.006543 + 8 x 0.000877 = 0.020102 per hour.
    head = HeadUsage("e2-standard-2", 3 * HOUR, 1 * HOUR, preemptions=1)
    tasks = [
        usage(hours=2),  # 0.094
        usage(preempted=True),  # 0.047, wasted
        TaskUsage("n2-standard-4", None, True, False, True, True, 5, 10 * HOUR),  # cached: nothing
        usage(machine=None, own_vm=False, hours=9),  # ran inside the head job: its cost covers it
        usage(machine="m1-ultramem-40", attempts=2),  # not in the table: counted as unpriced, never guessed
        usage(machine="n2-highmem-2", spot=False, hours=0.5, zone="europe-west1-c"),  # 0.072061
    ]
    got = estimate(tasks, head, table, "us-central1", default_spot=True, running=False)
    assert got["head"] == pytest.approx(0.0603)  # 3 h x 0.020102 = 0.060306
    assert got["tasks"] == pytest.approx(0.2131)  # 0.094 + 0.047 + 0.072061 = 0.213061
    assert got["total"] == pytest.approx(0.2734)  # 0.213061 + 0.060306 = 0.273367
    assert got["wasted"] == pytest.approx(0.0671)  # the preempted task 0.047 + the head's lost hour 0.020102
    assert (got["preemptions"], got["unpriced_tasks"]) == (2, 2)
    assert got["not_priced"] == ["machine type m1-ultramem-40 is not priced"]
    assert got["prices"] == "v1 (2026-12-01)" and got["currency"] == "USD"


def test_a_task_of_unknown_spot_takes_the_settings_and_a_running_one_counts_until_now():
    table = load_prices()
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    row = {"status": "running", "started_at": now - timedelta(hours=2), "machine_type": "n2-standard-4",
           "spot": None, "native_id": "projects/p/locations/us-central1/jobs/nf-1"}  # fmt: skip
    assert attempt_cost(row, table, "us-central1", True, now) == pytest.approx(0.094)
    assert attempt_cost(row, table, "us-central1", False, now) == 0.3885  # 2 h x 0.194236, to 4 decimals
    assert attempt_cost({**row, "status": "cached"}, table, "us-central1", True, now) == 0.0
    assert (
        attempt_cost({**row, "status": "submitted", "started_at": None}, table, "us-central1", True, now) == 0
    )
    assert attempt_cost({**row, "machine_type": "e2-micro"}, table, "us-central1", True, now) is None


def test_a_price_table_that_cannot_be_used_is_named_with_its_problem(tmp_path):
    bad = tmp_path / "prices.yaml"
    bad.write_text("version: 1\nas_of: '2026-01-01'\nregions:\n  r1:\n    n2: {vcpu: 1}\n")
    with pytest.raises(PriceTableInvalid, match=r"prices.yaml: regions.r1.n2 must have exactly vcpu, gib"):
        load_prices(str(bad))
    bad.write_text("regions: [")
    with pytest.raises(PriceTableInvalid, match="cannot be read as YAML"):
        load_prices(str(bad))
    head = "version: 1\nas_of: '2026-01-01'\nregions:\n  r1:\n"
    bad.write_text(head + "    n2: {vcpu: -1, gib: 0, spot_vcpu: 0, spot_gib: 0}\n")
    with pytest.raises(PriceTableInvalid, match=r"regions.r1.n2.vcpu must be a price per hour"):
        load_prices(str(bad))
