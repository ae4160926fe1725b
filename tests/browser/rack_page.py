#!/usr/bin/python3
"""Drives the rack page in headless chromium (Debian's chromium and
chromium-driver, python3-selenium) against a running agent; started by
tests/integration/rack_page_browser_test.cpp, which owns the agent, its
fake phones and the job. Every wait has a deadline (WebDriverWait); any
console error fails the run. Exits 0 when every check passed, else 1 with
the failed check on stderr.

  rack_page.py --url http://127.0.0.1:PORT/ --tokens FILE --job PATH
               --phones N --out DIR
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT = 20  # seconds, for anything the page should show
# The console errors a step is expected to cause, and no other step: the
# wrong token's 401 on /whoami, and the cut stream (with the reconnects
# refused while the browser is offline), which chromium reports as failed
# resource loads.
EXPECTED_ERRORS = {
    "wrong_token_is_refused": ("/whoami - Failed to load resource: the server responded with a status of 401",),
    "resumes_after_a_dropped_stream": ("/events - Failed to load resource: net::ERR_CONNECTION_RESET",
                                       "/events - Failed to load resource: net::ERR_INTERNET_DISCONNECTED"),
}


class Check(Exception):
    pass


def api(args, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(args.url.rstrip("/") + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def start_browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--user-data-dir=" + profile, "--window-size=1280,800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


class Run:
    def __init__(self, args, driver):
        self.args = args
        self.d = driver
        self.console = []

    def wait(self, what, condition, timeout=WAIT):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1,
                                 ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(condition)
        except TimeoutException:
            self.d.save_screenshot(f"{self.args.out}/failure.png")
            raise Check(f"timed out after {timeout} s waiting for: {what}")

    def text_of(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css).text

    def collect_console(self, step):
        expected = EXPECTED_ERRORS.get(step, ())
        for entry in self.d.get_log("browser"):
            self.console.append(entry)
            if entry.get("level") == "SEVERE" and not any(e in entry.get("message", "") for e in expected):
                self.errors.append(f"{step}: {entry.get('message')}")

    def sign_in(self, token):
        self.d.execute_script("location.hash = '#/'")
        forget = self.d.find_element(By.ID, "forget")
        if forget.is_displayed():
            forget.click()
        box = self.wait("the token form", EC.visibility_of_element_located((By.ID, "token-input")))
        box.clear()
        box.send_keys(token)
        self.d.find_element(By.ID, "token-submit").click()

    def tile(self, phone):
        return self.d.find_element(By.ID, "tile-" + phone)

    # ------------------------------------------------------------------ steps

    def wrong_token_is_refused(self):
        self.d.get(self.args.url)
        self.sign_in("not-a-token-of-this-agent")
        self.wait("the wrong token's message",
                  lambda d: "did not accept this token" in d.find_element(By.ID, "login-error").text)
        if self.d.execute_script("return sessionStorage.length") != 0:
            raise Check("a refused token stays in sessionStorage")

    def rack_shows_every_phone(self):
        token = self.tokens["operate"]
        self.sign_in(token)
        self.wait("the rack's tiles",
                  lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rack .tile")) == self.args.phones)
        self.wait("the event stream", lambda d: d.find_element(By.ID, "live").get_attribute("data-live") == "1")
        if self.args.url.split("?")[0].rstrip("/") != self.d.current_url.split("#")[0].rstrip("/"):
            raise Check(f"the URL changed: {self.d.current_url}")
        # The token is in the tab's sessionStorage, nowhere else.
        if self.d.execute_script("return localStorage.length") != 0 or token in self.d.current_url:
            raise Check("the token left sessionStorage")
        hubs = [h.get_attribute("data-hub") for h in self.d.find_elements(By.CSS_SELECTOR, "#rack .hub")]
        if self.args.phones > 3 and (len(hubs) < 2 or hubs[-1] != "none"):
            raise Check(f"phones not grouped by hub: {hubs}")
        # In port order inside a hub: 1-1.2 before 1-1.10.
        if self.args.phones > 13:
            first = self.d.find_elements(By.CSS_SELECTOR, "#rack .hub[data-hub='1-1'] .tile")
            ids = [t.get_attribute("data-phone") for t in first]
            if ids[:2] != ["phone_04", "phone_05"] or ids[9] != "phone_13":
                raise Check(f"hub 1-1 not in port order: {ids}")
        absent = self.tile("phone_04")
        if absent.get_attribute("data-adb") != "absent" or "not-device" not in absent.get_attribute("class") or \
                "ABSENT" not in absent.text:
            raise Check(f"an absent phone is not marked: {absent.get_attribute('class')} {absent.text!r}")
        self.wait("phone_01 on adb and ready",
                  lambda d: self.tile("phone_01").get_attribute("data-adb") == "device" and
                  self.tile("phone_01").get_attribute("data-health") == "ready")
        counts = self.text_of("#counts")
        if "ready" not in counts or "not on adb" not in counts:
            raise Check(f"counts per health missing: {counts!r}")

    def layout_fits(self):
        for width, height in ((1280, 800), (800, 1000)):
            self.d.set_window_size(width, height)
            self.wait(f"the layout at {width} wide", lambda d: d.execute_script("return window.innerWidth") <= width)
            overflow = self.d.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            if overflow > 0:
                raise Check(f"at {width} wide the page scrolls sideways by {overflow} px")
            if width == 800:
                self.d.save_screenshot(f"{self.args.out}/rack-800.png")
        self.d.set_window_size(1280, 800)
        self.d.execute_script("window.scrollTo(0, 0)")
        # The whole rack (100 phones on 10-port hubs) fits one laptop screen:
        # the last tile ends within the viewport of a 1280x800 window.
        bottom, viewport = self.d.execute_script(
            "const t = document.querySelectorAll('#rack .tile');"
            "return [t[t.length - 1].getBoundingClientRect().bottom, window.innerHeight]")
        print(f"rack of {self.args.phones} phones: last tile ends at {bottom:.0f} px of a {viewport} px viewport")
        if bottom > viewport:
            raise Check(f"the rack does not fit the 1280x800 window: {bottom:.0f} px > {viewport} px")

    def submitted_work_turns_the_tile_busy(self):
        self.d.execute_script("window.__loadedOnce = 'yes'")
        status, body = api(self.args, "POST", "/processes", self.tokens["schedule"], {
            "process_id": "p-browser", "phone_id": "phone_01", "account_id": "acc_browser",
            "requested_by": {"system": "browser-test"},
            "queue_items": [{"queue_item_id": "p-browser-q0", "command": [self.args.job]},
                            {"queue_item_id": "p-browser-q1", "command": [self.args.job]}]})
        if status != 201:
            raise Check(f"submit: {status} {body}")
        self.wait("phone_01's tile to turn busy with a running timer",
                  lambda d: self.tile("phone_01").get_attribute("data-health") == "busy" and
                  self.tile("phone_01").find_elements(By.CSS_SELECTOR, ".timer") and
                  "p-browser" in self.tile("phone_01").text)
        if self.d.execute_script("return window.__loadedOnce") != "yes":
            raise Check("the page reloaded")
        self.d.save_screenshot(f"{self.args.out}/rack.png")
        self.wait("the busy count", lambda d: d.find_element(
            By.CSS_SELECTOR, "#counts .h-busy .count-n").text == "1")

    def resumes_after_a_dropped_stream(self):
        # Take the browser off the network (DevTools emulation refuses new
        # connections; the agent and this script still talk) and cut its open
        # ones (`ss -K` destroys the agent's end of them: root), change the
        # rack meanwhile, go online: the page resumes with Last-Event-ID and
        # shows what it missed.
        self.d.execute_cdp_cmd("Network.enable", {})
        self.d.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        port = urllib.parse.urlsplit(self.args.url).port
        cut = subprocess.run(["ss", "-K", "-tn", f"sport = :{port}"], capture_output=True, text=True, timeout=10)
        if cut.returncode != 0:
            raise Check(f"ss -K failed: {cut.stderr}")
        self.wait("the page to see the stream drop",
                  lambda d: d.find_element(By.ID, "live").get_attribute("data-live") == "0")
        status, body = api(self.args, "POST", "/processes", self.tokens["schedule"], {
            "process_id": "p-resume", "phone_id": "phone_03", "account_id": "acc_browser",
            "queue_items": [{"queue_item_id": "p-resume-q0", "command": [self.args.job]}]})
        if status != 201:
            raise Check(f"submit: {status} {body}")
        self.wait("p-resume running (seen over the API)", lambda d: api(
            self.args, "GET", "/processes/p-resume", self.tokens["read"])[1]["status"] == "running")
        if self.tile("phone_03").get_attribute("data-health") != "ready":
            raise Check("the page changed while it was offline")
        self.d.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        self.wait("phone_03's tile busy after the reconnect",
                  lambda d: self.tile("phone_03").get_attribute("data-health") == "busy" and
                  "p-resume" in self.tile("phone_03").text)
        self.wait("the stream live again", lambda d: d.find_element(By.ID, "live").get_attribute("data-live") == "1")
        if self.d.execute_script("return window.__loadedOnce") != "yes":
            raise Check("the page reloaded")

    def process_page_cancels(self):
        self.tile("phone_01").click()
        link = self.wait("the phone page's current process",
                         EC.element_to_be_clickable((By.CSS_SELECTOR, "#phone-page a[href='#/process/p-browser']")))
        link.click()
        self.wait("the process running", lambda d: d.find_element(By.ID, "process-status").text == "running")
        self.wait("the live stdout tail", lambda d: "hello from the job" in d.find_element(By.ID, "log-stdout").text)
        self.wait("the live stderr tail", lambda d: "a warning on stderr" in d.find_element(By.ID, "log-stderr").text)
        self.d.save_screenshot(f"{self.args.out}/process.png")
        # A reason is required.
        self.d.find_element(By.ID, "cancel-submit").click()
        if self.d.find_element(By.ID, "process-status").text != "running":
            raise Check("a cancel without a reason went through")
        Select(self.d.find_element(By.ID, "cancel-strategy")).select_by_value("soft_then_force")
        delay = self.d.find_element(By.ID, "cancel-delay")
        delay.clear()
        delay.send_keys("3")
        self.d.find_element(By.ID, "cancel-reason").send_keys("browser test: wrong account")
        self.d.find_element(By.ID, "cancel-submit").click()
        self.wait("the cancel answer in words", lambda d: d.find_element(By.ID, "cancel-result").text.startswith(
            "cancel_requested: 1 pending item cancelled; stop notice sent to item p-browser-q0; force kill at "))
        self.wait("the process cancelled", lambda d: d.find_element(By.ID, "process-status").text == "cancelled")
        self.wait("the audit line", lambda d: any(
            "browser test: wrong account" in r.text and "soft_then_force (3 s)" in r.text
            for r in d.find_elements(By.CSS_SELECTOR, "table.audit tbody tr")))
        self.wait("the cancel record", lambda d: "wrong account" in d.find_element(By.ID, "cancel-record").text)
        if self.d.find_element(By.ID, "cancel-form").is_displayed():
            raise Check("the Cancel button is still offered for a cancelled process")
        self.d.execute_script("location.hash = '#/'")
        self.wait("phone_01 ready again", lambda d: self.tile("phone_01").get_attribute("data-health") == "ready")

    def phone_page_resets(self):
        self.tile("phone_02").click()
        self.wait("the reset form", EC.visibility_of_element_located((By.ID, "reset-reason")))
        self.d.find_element(By.ID, "reset-reason").send_keys("browser test: stuck screen")
        self.d.find_element(By.ID, "reset-submit").click()
        self.wait("the reset accepted", lambda d: d.find_element(By.ID, "reset-result").text.startswith("reset "))
        self.wait("the reset's outcome and steps in the history", lambda d: any(
            "browser test: stuck screen" in r.text and r.find_elements(By.CSS_SELECTOR, ".steps tbody tr") and
            r.find_element(By.CSS_SELECTOR, "b").text in ("succeeded", "failed")
            for r in d.find_elements(By.CSS_SELECTOR, "#phone-page .reset")), timeout=60)
        self.d.execute_script("location.hash = '#/'")
        self.wait("phone_02's tile shows the reset",
                  lambda d: self.tile("phone_02").find_elements(By.CSS_SELECTOR, ".r-succeeded, .r-failed"))

    def read_token_shows_no_buttons(self):
        self.sign_in(self.tokens["read"])
        self.wait("the read token's rack", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#rack .tile")) ==
                  self.args.phones and "(read)" in d.find_element(By.ID, "who").text)
        self.d.execute_script("location.hash = '#/process/p-browser'")
        self.wait("the process page", lambda d: d.find_element(By.ID, "process-status").text == "cancelled")
        self.wait("its audit trail", lambda d: d.find_elements(By.CSS_SELECTOR, "table.audit tbody tr"))
        if self.d.find_elements(By.ID, "cancel-form") or self.d.find_elements(By.CSS_SELECTOR, "#view button"):
            raise Check("a read token is offered the Cancel button")
        self.d.execute_script("location.hash = '#/phone/phone_02'")
        self.wait("the phone page", lambda d: d.find_elements(By.CSS_SELECTOR, "#phone-page .reset"))
        if self.d.find_elements(By.ID, "reset-form"):
            raise Check("a read token is offered the Reset button")

    def run(self, tokens):
        self.tokens = tokens
        steps = [
            ("a wrong token gets a clear message", self.wrong_token_is_refused),
            ("the rack shows every phone", self.rack_shows_every_phone),
            ("the layout fits 1280x800 and 800 wide", self.layout_fits),
            ("submitted work turns the tile busy live", self.submitted_work_turns_the_tile_busy),
            ("the page resumes after a dropped stream", self.resumes_after_a_dropped_stream),
            ("the process page cancels with a reason", self.process_page_cancels),
            ("the phone page resets with a reason", self.phone_page_resets),
            ("a read token shows no buttons", self.read_token_shows_no_buttons),
        ]
        self.errors = []
        for name, step in steps:
            started = time.monotonic()
            step()
            self.collect_console(getattr(step, "__name__", ""))
            print(f"ok: {name} ({time.monotonic() - started:.1f} s)", flush=True)
        if self.errors:
            raise Check("console errors:\n" + "\n".join(self.errors))
        print(f"ok: no console errors ({len(self.console)} console entries)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tokens", required=True, help="JSON file: read, operate, schedule")
    parser.add_argument("--job", required=True)
    parser.add_argument("--phones", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.tokens) as f:
        tokens = json.load(f)
    profile = tempfile.mkdtemp(prefix="phonefarm-chromium-")
    driver = None
    try:
        driver = start_browser(profile)
        Run(args, driver).run(tokens)
        print(f"browser: all checks passed; screenshots in {args.out}")
        return 0
    except Check as e:
        print(f"browser: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if driver is not None:
            for entry in driver.get_log("browser"):
                print(f"console {entry.get('level')}: {entry.get('message')}", file=sys.stderr)
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
