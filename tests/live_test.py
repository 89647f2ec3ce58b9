"""The live board end to end: streams, fan-out across workers and servers, caps, the page."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import WORKED_EXAMPLE, bearer, http_qualify, http_register
from tests.measured import evidence_for
from tests.services import CHROMIUM_FLAGS, EventStream, unavailable

ARTIFACTS = Path(os.environ.get("GPUQ_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts"))


@pytest.fixture
def start_live(start_server):
    """Servers whose streams send a heartbeat every 0.3 s, so closed clients are noticed at once."""

    def start(**env: str):
        return start_server(GPUQ_STREAM_HEARTBEAT_SECONDS="0.3", **env)

    return start


def submit(server, body=None) -> dict:
    response = requests.post(f"{server.base}/submit_qualification", json=body or WORKED_EXAMPLE, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def test_two_streams_both_receive_a_submission(start_live, database, redis_server):
    server = start_live(DATABASE_URL=database, REDIS_URL=redis_server.url, WEB_CONCURRENCY="2")
    streams = [EventStream(f"{server.base}/leaderboard/stream") for _ in range(2)]
    try:
        for stream in streams:
            snapshot = stream.wait_for("snapshot")
            assert snapshot["leaderboard"] == [] and snapshot["total"] == 0
            assert snapshot["histogram"] == [0] * 10
            assert [(s["name"], s["state"]) for s in snapshot["slots"]] == [("gpu-0", "free")]
        created = submit(server)
        for stream in streams:
            event = stream.wait_for("submission", lambda d: d["submission_id"] == created["submission_id"])
            assert event["score"] == 87.95 and event["rank"] == 1
            board = stream.wait_for("leaderboard")
            assert board["leaderboard"][0]["submission_id"] == created["submission_id"]
    finally:
        for stream in streams:
            stream.close()


def test_a_submission_on_one_server_reaches_a_stream_on_another(start_live, database, redis_server):
    env = {"DATABASE_URL": database, "REDIS_URL": redis_server.url}
    watched, other = start_live(**env), start_live(**env)
    stream = EventStream(f"{watched.base}/leaderboard/stream")
    try:
        stream.wait_for("snapshot")
        created = submit(other)
        event = stream.wait_for("submission", lambda d: d["submission_id"] == created["submission_id"])
        assert event["rank"] == 1
    finally:
        stream.close()


def test_a_reconnect_starts_with_a_fresh_snapshot(start_live, tmp_path):
    server = start_live(DATABASE_URL=f"sqlite:///{tmp_path / 'live.sqlite3'}")
    created = submit(server)
    stream = EventStream(f"{server.base}/leaderboard/stream", headers={"Last-Event-ID": "12345-1"})
    try:
        snapshot = stream.wait_for("snapshot")
        assert [e["submission_id"] for e in snapshot["leaderboard"]] == [created["submission_id"]]
        assert snapshot["histogram"][8] == 1  # 87.95 is in [80, 90)
        assert snapshot["records"][0]["score"] == 87.95
    finally:
        stream.close()


def test_streams_per_address_and_per_worker_are_capped(start_live, tmp_path):
    server = start_live(
        DATABASE_URL=f"sqlite:///{tmp_path / 'caps.sqlite3'}",
        GPUQ_STREAMS_PER_ADDRESS="2",
    )
    streams = [EventStream(f"{server.base}/leaderboard/stream") for _ in range(2)]
    try:
        assert [s.status for s in streams] == [200, 200]
        third = EventStream(f"{server.base}/leaderboard/stream")
        assert third.status == 429
        assert third.response.headers["Content-Type"] == "application/problem+json"
        assert int(third.response.headers["Retry-After"]) > 0
        assert requests.get(f"{server.base}/leaderboard", timeout=10).status_code == 200  # the API stays up
    finally:
        for stream in streams:
            stream.close()

    busy = start_live(DATABASE_URL=f"sqlite:///{tmp_path / 'caps2.sqlite3'}", GPUQ_STREAMS_PER_WORKER="1")
    first = EventStream(f"{busy.base}/leaderboard/stream")
    try:
        first.wait_for("snapshot")
        second = EventStream(f"{busy.base}/leaderboard/stream")
        assert second.status == 503
        assert int(second.response.headers["Retry-After"]) > 0
    finally:
        first.close()


def test_make_run_prints_the_board_address(start_live, tmp_path):
    server = start_live(DATABASE_URL=f"sqlite:///{tmp_path / 'print.sqlite3'}")
    assert f"live board at http://localhost:{server.port}/board" in server.log()


def browser():
    """Selenium driving Debian's Chromium through the chromedriver built with it."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        unavailable(
            "chromium and chromedriver", FileNotFoundError("Debian packages chromium, chromium-driver")
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, "--window-size=1280,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_the_board_page_shows_a_new_submission_without_a_reload(start_live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    server = start_live(DATABASE_URL=f"sqlite:///{tmp_path / 'board.sqlite3'}")
    earlier = submit(server, {**WORKED_EXAMPLE, "accuracy": 50})
    driver = browser()
    try:
        driver.get(f"{server.base}/board")
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "connection"), "live"))
        rows = driver.find_elements(By.CSS_SELECTOR, "#leaders tbody tr")
        assert [r.get_attribute("data-submission-id") for r in rows] == [str(earlier["submission_id"])]
        driver.execute_script("window.__loadedOnce = true")

        created = submit(server)
        selector = f'#leaders tbody tr[data-submission-id="{created["submission_id"]}"]'
        row = WebDriverWait(driver, 2).until(EC.presence_of_element_located((By.CSS_SELECTOR, selector)))
        assert row.text.split()[:3] == ["1", f"#{created['submission_id']}", "87.95"]
        assert driver.execute_script("return window.__loadedOnce") is True  # no reload happened
        assert "87.95" in driver.find_element(By.ID, "announcer").text

        # A participant qualifies: the free slot is granted and the page shows it, counting down.
        http_qualify(server.base, "alice")
        WebDriverWait(driver, 2).until(EC.text_to_be_present_in_element((By.ID, "slots"), "alice"))
        slot = driver.find_element(By.CSS_SELECTOR, "#slots li")
        assert slot.get_attribute("data-state") == "held"
        assert re.fullmatch(r"gpu-0 held · alice · (24:00:00|23:59:\d\d) left", slot.text), slot.text
        # A measured result (a run's evidence, the server's own metrics) is marked as such.
        bob = http_register(server.base, "bob")
        ticket = requests.post(f"{server.base}/runs", headers=bearer(bob), timeout=10).json()
        answer = requests.post(
            f"{server.base}{ticket['evidence_url']}",
            json=evidence_for(ticket, seconds=0.3),
            headers=bearer(bob),
            timeout=10,
        ).json()
        assert answer["ranked"] is True, answer
        measured = f'#leaders tbody tr[data-submission-id="{answer["submission_id"]}"] .measured'
        mark = WebDriverWait(driver, 2).until(EC.presence_of_element_located((By.CSS_SELECTOR, measured)))
        assert "measured" in mark.text
        assert not driver.find_elements(By.CSS_SELECTOR, f"{selector} .measured")  # typed numbers: no mark
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "board.png"))
        browser_log = driver.get_log("browser") if hasattr(driver, "get_log") else []
        assert not [entry for entry in browser_log if "Content Security Policy" in entry.get("message", "")]
    finally:
        driver.quit()


def measured_result(server, name: str, model: str, util: float) -> dict:
    """`name` registers and submits a measured run on GPU `model`; returns the answer."""
    key = http_register(server.base, name)
    ticket = requests.post(f"{server.base}/runs", headers=bearer(key), timeout=10).json()
    body = evidence_for(ticket, seconds=0.3, util=util)
    body["gpu"]["name"] = model
    answer = requests.post(
        f"{server.base}{ticket['evidence_url']}", json=body, headers=bearer(key), timeout=10
    )
    assert answer.status_code == 201 and answer.json()["ranked"] is True, answer.text
    return answer.json()


def test_the_board_of_one_gpu_model_shows_only_its_results_and_follows_the_stream(start_live, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    h100, a100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"
    server = start_live(DATABASE_URL=f"sqlite:///{tmp_path / 'gpu-board.sqlite3'}")
    alice = measured_result(server, "alice", h100, 80.0)
    measured_result(server, "bob", a100, 95.0)  # best overall, on another model
    too_long = requests.get(f"{server.base}/board", params={"gpu": "x" * 129}, timeout=10)
    assert too_long.status_code == 400 and too_long.headers["Content-Type"] == "application/problem+json"
    driver = browser()
    try:
        driver.get(f"{server.base}/board?gpu=" + requests.utils.quote(h100))
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "connection"), "live"))

        def ids() -> list[str]:  # read in one script: the rows are re-rendered at any moment
            return driver.execute_script(
                "return [...document.querySelectorAll('#leaders tbody tr')].map(r => r.dataset.submissionId)"
            )

        WebDriverWait(driver, 5).until(lambda _d: ids() == [str(alice["submission_id"])])
        assert h100 in driver.find_element(By.ID, "leaders-title").text
        WebDriverWait(driver, 5).until(EC.text_to_be_present_in_element((By.ID, "gpus"), a100))
        current = driver.execute_script(
            "return [...document.querySelectorAll('#gpus a[aria-current=page]')].map((a) => a.textContent)"
        )
        assert current == [f"{h100} (1)"]

        carol = measured_result(server, "carol", h100, 90.0)  # ranks above alice on the H100 board
        WebDriverWait(driver, 5).until(
            lambda _d: ids() == [str(carol["submission_id"]), str(alice["submission_id"])]
        )
        measured_result(server, "dave", a100, 99.0)  # another model's: never on this board
        erin = measured_result(server, "erin", h100, 70.0)
        expected = [str(carol["submission_id"]), str(alice["submission_id"]), str(erin["submission_id"])]
        WebDriverWait(driver, 5).until(lambda _d: ids() == expected)
        assert driver.find_element(By.ID, "total").text == "3"
        WebDriverWait(driver, 5).until(EC.text_to_be_present_in_element((By.ID, "gpus"), f"{h100} (3)"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "board-gpu.png"))
    finally:
        driver.quit()


def test_a_refused_board_says_why_and_goes_live_once_a_stream_is_free(start_live, tmp_path):
    """The sixth viewer behind one address used to get an empty page for good after its 429."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    server = start_live(
        DATABASE_URL=f"sqlite:///{tmp_path / 'refused.sqlite3'}",
        GPUQ_STREAMS_PER_ADDRESS="1",  # the fixture's short heartbeat frees a closed stream's slot soon
    )
    created = submit(server)
    holder = EventStream(f"{server.base}/leaderboard/stream")  # takes this address's one stream
    driver = browser()
    try:
        holder.wait_for("snapshot")
        driver.get(f"{server.base}/board")
        connection = (By.ID, "connection")
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element(connection, "retrying in"))
        waiting = driver.find_element(*connection)
        assert waiting.get_attribute("data-state") == "waiting"
        assert "live streams per address" in waiting.text  # the server's own reason

        holder.close()
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(*connection).get_attribute("data-state") == "live"
        )
        assert driver.find_element(*connection).text == "live"
        selector = f'#leaders tbody tr[data-submission-id="{created["submission_id"]}"]'
        WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.CSS_SELECTOR, selector)))
    finally:
        holder.close()
        driver.quit()


def test_a_stream_ends_after_its_maximum_lifetime(start_live, tmp_path):
    server = start_live(DATABASE_URL=f"sqlite:///{tmp_path / 'life.sqlite3'}", GPUQ_STREAM_MAX_SECONDS="1")
    response = requests.get(f"{server.base}/leaderboard/stream", stream=True, timeout=(5, 30))
    body = b"".join(response.iter_content(chunk_size=None))  # returns only once the server ends it
    assert b"event: snapshot" in body
    assert body.startswith(b"retry: ")


def test_the_sweeper_of_a_real_server_hands_an_expired_slot_on(start_live, database, redis_server):
    """Leases of 1.8 s and a sweeper every 0.1 s in each of two workers: the slot passes to
    the next in line exactly once, and the stream says so."""
    server = start_live(
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        WEB_CONCURRENCY="2",
        GPUQ_SLOT_HOURS="0.0005",
        GPUQ_SLOT_SWEEP_SECONDS="0.1",
    )
    stream = EventStream(f"{server.base}/leaderboard/stream")
    try:
        stream.wait_for("snapshot")
        http_qualify(server.base, "first", accuracy=90)
        http_qualify(server.base, "second", accuracy=80)
        stream.wait_for("slot", lambda d: d["action"] == "grant" and d["participant"] == "first")
        expiry = stream.wait_for("slot", lambda d: d["action"] == "expiry", timeout=15)
        assert expiry["participant"] == "first"
        handed = stream.wait_for("slot", lambda d: d["action"] == "grant", timeout=15)
        assert handed["participant"] == "second" and handed["slots"][0]["holder"] == "second"
    finally:
        stream.close()
    oldest = requests.get(f"{server.base}/slots/history?limit=100", timeout=10).json()["leases"][::-1]
    # Two workers swept every 0.1 s; still one lease after another, the second one to "second".
    assert [(lease["participant"], lease["end_reason"]) for lease in oldest[:1]] == [("first", "expired")]
    assert oldest[1]["participant"] == "second"
    assert oldest[1]["granted_at"] >= oldest[0]["ended_at"]
