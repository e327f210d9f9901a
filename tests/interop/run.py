#!/usr/bin/env python3
"""Interop driver: hookrelay vs. the senders' own webhook libraries.

For every sender, each request is signed ONLY by that sender's maintained library, the same
library's verifier gives its verdict, and the relay must agree (library accepts <=> relay 200).
The accepted requests are then read back from Kafka with confluent-kafka and decoded with the
CloudEvents SDK's Kafka binding.

Environment (set by the Rust test harness):
  RELAY_URL         http://127.0.0.1:PORT
  KAFKA_BROKERS     host:port
  TOPIC_PREFIX      records of source S are read from "{TOPIC_PREFIX}.{S}"
  SECRET            plain secret of the github/shopify/slack/stripe sources
  WHSEC             Standard Webhooks secret (whsec_...)
  INTEROP_NODE_DIR  directory whose node_modules holds the npm packages (default: this directory)
  NODE              node binary (default: node)
  KAFKA_WAIT_SECS   how long to poll Kafka at most (default: 20)

Exit 0 when everything agrees, 1 otherwise. Secrets are never printed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

import requests
import stripe
from confluent_kafka import Consumer, KafkaError
from confluent_kafka import libversion as ck_libversion
from cloudevents.v1 import kafka as ce_kafka  # the SDK's cloudevents.kafka binding (v1 API of cloudevents 2.x)
from cloudevents.core.bindings import kafka as ce_core_kafka  # the new (core) Kafka binding of cloudevents 2.x
from cloudevents.core.formats.json import JSONFormat
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook as StdWebhook
from standardwebhooks.webhooks import WebhookVerificationError as StdVerificationError
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError as SvixVerificationError

HERE = os.path.dirname(os.path.abspath(__file__))
SIGN_MJS = os.path.join(HERE, "sign.mjs")
STALE_SECS = 400
NON_ASCII = "h\u00e9llo \u2713 \u65e5\u672c\u8a9e \U0001f680"  # sent as raw UTF-8, not \u escapes
DOCUMENTED_REFUSALS = {"invalid_signature", "missing_signature", "stale_timestamp"}
# Record header names that must never carry a credential.
FORBIDDEN_HEADER_WORDS = ("signature", "hmac", "authorization", "cookie", "secret", "token", "api-key", "apikey")


def env(name: str, default: Optional[str] = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        sys.exit(f"run.py: environment variable {name} is required")
    return value


RELAY_URL = env("RELAY_URL").rstrip("/")
KAFKA_BROKERS = env("KAFKA_BROKERS")
TOPIC_PREFIX = env("TOPIC_PREFIX")
SECRET = env("SECRET")
WHSEC = env("WHSEC")
NODE_DIR = os.environ.get("INTEROP_NODE_DIR") or HERE
NODE = os.environ.get("NODE") or "node"
KAFKA_WAIT_SECS = float(os.environ.get("KAFKA_WAIT_SECS") or 20)

OTHER_SECRET = "another-signing-secret-" + uuid.uuid4().hex[:8]
OTHER_WHSEC = "whsec_" + base64.b64encode(b"another-standard-key-" + uuid.uuid4().hex[:8].encode()).decode()
SECRET_VALUES = [SECRET, WHSEC, WHSEC[len("whsec_"):] if WHSEC.startswith("whsec_") else WHSEC]


def redact(text: str) -> str:
    for s in SECRET_VALUES + [OTHER_SECRET, OTHER_WHSEC]:
        if s:
            text = text.replace(s, "<redacted>")
    return text


# --------------------------------------------------------------------------- Node libraries

def node_call(req: dict) -> dict:
    """One request to sign.mjs (GitHub / Shopify libraries)."""
    env_ = dict(os.environ, INTEROP_NODE_DIR=NODE_DIR)
    proc = subprocess.run(
        [NODE, SIGN_MJS], input=json.dumps(req).encode(), capture_output=True, env=env_, timeout=60
    )
    try:
        out = json.loads(proc.stdout.decode() or "null")
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise RuntimeError(
            f"sign.mjs failed (exit {proc.returncode}): {redact(proc.stderr.decode()[-2000:])}"
        )
    return out


def node_sign(sender: str, secret: str, body: bytes) -> str:
    out = node_call({"sender": sender, "op": "sign", "secret": secret, "body_b64": base64.b64encode(body).decode()})
    if not out.get("ok"):
        raise RuntimeError(f"{sender} library could not sign: {redact(str(out.get('error')))}")
    return out["signature"]


def node_verify(sender: str, secret: str, body: bytes, signature: str, headers: Optional[dict] = None) -> tuple[bool, str]:
    req = {
        "sender": sender,
        "op": "verify",
        "secret": secret,
        "body_b64": base64.b64encode(body).decode(),
        "signature": signature,
    }
    if headers is not None:
        req["headers"] = headers
    out = node_call(req)
    if not out.get("ok"):
        # The library threw: it does not accept the request.
        return False, "threw: " + redact(str(out.get("error")))[:120]
    return bool(out["valid"]), str(out.get("reason") or "")


# --------------------------------------------------------------------------- cases

@dataclass
class Case:
    sender: str  # the library family, e.g. "svix"
    source: str  # the relay source, e.g. "standard"
    name: str
    body: bytes
    headers: dict
    verify: Callable[[], tuple[bool, str]]  # the library's own verifier
    event_id: Optional[str] = None  # expected CloudEvent id when accepted
    event_type: Optional[str] = None  # expected CloudEvent type when accepted
    expect_code: Optional[str] = None  # expected refusal code, when the case's point is a specific one
    handshake: bool = False  # slack url_verification: answered, never published
    known_difference: str = ""  # a documented, deliberate difference: reported, not failed
    # filled in by run_case
    lib_ok: bool = False
    lib_detail: str = ""
    status: int = 0
    answer: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def now() -> int:
    return int(time.time())


def json_body(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def tamper(body: bytes) -> bytes:
    """Changes exactly one byte of the body, keeping it a valid JSON object."""
    marker = b'"nonce":"'
    i = body.index(marker) + len(marker)
    c = body[i : i + 1]
    repl = b"b" if c != b"b" else b"c"
    out = body[:i] + repl + body[i + 1 :]
    assert len(out) == len(body) and out != body
    return out


def truncate(sig: str) -> str:
    return sig[:-6]


def nonce() -> str:
    return uuid.uuid4().hex


# GitHub ------------------------------------------------------------------------------------

def github_cases() -> list[Case]:
    cases = []

    def make(name, secret=SECRET, tamper_body=False, trunc=False, zen="Keep it logically awesome."):
        delivery = str(uuid.uuid4())
        body = json_body({"zen": zen, "hook_id": 1, "nonce": nonce(),
                          "repository": {"full_name": "octo/hello"}})
        sig = node_sign("github", secret, body)
        if trunc:
            sig = truncate(sig)
        sent = tamper(body) if tamper_body else body
        headers = {"X-Hub-Signature-256": sig, "X-GitHub-Delivery": delivery, "X-GitHub-Event": "push"}
        return Case("github", "github", name, sent, headers,
                    verify=lambda: node_verify("github", SECRET, sent, sig),
                    event_id=delivery, event_type="push")

    cases.append(make("valid"))
    cases.append(make("tampered_body", tamper_body=True))
    cases.append(make("other_secret", secret=OTHER_SECRET))
    cases.append(make("truncated_signature", trunc=True))
    cases.append(make("valid_fresh_id"))
    cases.append(make("valid_non_ascii_body", zen=NON_ASCII))
    return cases


# Shopify -----------------------------------------------------------------------------------

def shopify_cases() -> list[Case]:
    cases = []

    def make(name, secret=SECRET, tamper_body=False, trunc=False, events_headers=False):
        event_id = str(uuid.uuid4())
        body = json_body({"id": 820982911946154508, "email": "jon@example.com", "nonce": nonce()})
        sig = node_sign("shopify", secret, body)
        if trunc:
            sig = truncate(sig)
        sent = tamper(body) if tamper_body else body
        if events_headers:
            # Shopify's newer "events" delivery: the same headers without the X- prefix.
            headers = {
                "Shopify-Hmac-Sha256": sig,
                "Shopify-Topic": "orders/create",
                "Shopify-Shop-Domain": "interop.myshopify.com",
                "Shopify-API-Version": "2026-01",
                "Shopify-Event-Id": event_id,
                "Shopify-Triggered-At": datetime.now(timezone.utc).isoformat(),
            }
        else:
            headers = {
                "X-Shopify-Hmac-Sha256": sig,
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Shop-Domain": "interop.myshopify.com",
                "X-Shopify-API-Version": "2026-01",
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Triggered-At": datetime.now(timezone.utc).isoformat(),
            }
        return Case("shopify", "shopify", name, sent, headers,
                    verify=lambda: node_verify("shopify", SECRET, sent, sig, headers),
                    event_id=event_id, event_type="orders.create")

    cases.append(make("valid"))
    cases.append(make("tampered_body", tamper_body=True))
    cases.append(make("other_secret", secret=OTHER_SECRET))
    cases.append(make("truncated_signature", trunc=True))
    cases.append(make("valid_fresh_id"))
    cases.append(make("valid_unprefixed_headers", events_headers=True))
    return cases


# Slack -------------------------------------------------------------------------------------

def slack_cases() -> list[Case]:
    cases = []
    verifier = SignatureVerifier(signing_secret=SECRET)

    def make(name, secret=SECRET, tamper_body=False, trunc=False, age=0, body_obj=None, handshake=False,
             expect_code=None, text="hello"):
        event_id = "Ev" + uuid.uuid4().hex[:10].upper()
        if body_obj is None:
            body_obj = {"token": "verification-token-unused", "team_id": "T0001", "api_app_id": "A0001",
                        "event": {"type": "app_mention", "user": "U0001", "text": text, "ts": "1.2"},
                        "type": "event_callback", "event_id": event_id, "event_time": now(), "nonce": nonce()}
        body = json_body(body_obj)
        ts = str(now() - age)
        sig = SignatureVerifier(signing_secret=secret).generate_signature(timestamp=ts, body=body)
        if trunc:
            sig = truncate(sig)
        sent = tamper(body) if tamper_body else body
        headers = {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": ts}
        return Case("slack", "slack", name, sent, headers,
                    verify=lambda: (verifier.is_valid_request(sent, headers), ""),
                    event_id=event_id, event_type="app_mention", handshake=handshake, expect_code=expect_code)

    challenge = "chal-" + uuid.uuid4().hex
    cases.append(make("url_verification", handshake=True,
                      body_obj={"token": "verification-token-unused", "challenge": challenge,
                                "type": "url_verification", "nonce": nonce()}))
    cases.append(make("valid"))
    cases.append(make("tampered_body", tamper_body=True))
    cases.append(make("other_secret", secret=OTHER_SECRET))
    cases.append(make("truncated_signature", trunc=True))
    cases.append(make("stale_timestamp", age=STALE_SECS, expect_code="stale_timestamp"))
    cases.append(make("future_timestamp", age=-STALE_SECS, expect_code="stale_timestamp"))
    cases.append(make("valid_fresh_id"))
    cases.append(make("valid_non_ascii_body", text=NON_ASCII))
    return cases


# Stripe ------------------------------------------------------------------------------------

def stripe_cases() -> list[Case]:
    cases = []

    def make(name, secret=SECRET, tamper_body=False, trunc=False, age=0, expect_code=None, rotated=False,
             known_difference=""):
        evt_id = "evt_" + uuid.uuid4().hex[:24]
        body = json_body({"id": evt_id, "object": "event", "api_version": "2024-06-20", "created": now(),
                          "type": "payment_intent.succeeded", "livemode": False, "nonce": nonce(),
                          "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 2000}}})
        ts = now() - age
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)
        if rotated:
            # Secret rotation: Stripe sends one v1 per active secret; the first is from another secret.
            other = stripe.WebhookSignature.generate_signature_header(body.decode(), OTHER_SECRET, timestamp=ts)
            header = other + "," + header.split(",", 1)[1]
        if trunc:
            header = truncate(header)
        sent = tamper(body) if tamper_body else body

        def verify():
            try:
                stripe.Webhook.construct_event(sent, header, SECRET)
                return True, ""
            except stripe.SignatureVerificationError as e:
                return False, str(e).split(".")[0][:60]

        return Case("stripe", "stripe", name, sent, {"Stripe-Signature": header}, verify=verify,
                    event_id=evt_id, event_type="payment_intent.succeeded", expect_code=expect_code,
                    known_difference=known_difference)

    cases.append(make("valid"))
    cases.append(make("tampered_body", tamper_body=True))
    cases.append(make("other_secret", secret=OTHER_SECRET))
    cases.append(make("truncated_signature", trunc=True))
    cases.append(make("stale_timestamp", age=STALE_SECS, expect_code="stale_timestamp"))
    # stripe-python's verify_header only refuses timestamps older than the tolerance, never newer ones;
    # hookrelay refuses both directions (documented policy). Reported, not failed.
    cases.append(make("future_timestamp", age=-STALE_SECS, expect_code="stale_timestamp",
                      known_difference="stripe-python accepts future timestamps; hookrelay refuses >300 s either way"))
    cases.append(make("valid_fresh_id"))
    cases.append(make("valid_two_v1_signatures", rotated=True))
    return cases


# Standard Webhooks (standardwebhooks: webhook-*; svix: svix-*) -----------------------------

def standard_cases(sender: str) -> list[Case]:
    cases = []
    lib = StdWebhook if sender == "standardwebhooks" else SvixWebhook
    prefix = "webhook" if sender == "standardwebhooks" else "svix"
    verifier = lib(WHSEC)

    def make(name, secret=WHSEC, tamper_body=False, trunc=False, age=0, expect_code=None, rotated=False):
        msg_id = "msg_" + uuid.uuid4().hex
        body = json_body({"type": "invoice.paid", "timestamp": datetime.now(timezone.utc).isoformat(),
                          "data": {"invoice": "inv_1"}, "nonce": nonce()})
        ts = datetime.fromtimestamp(now() - age, tz=timezone.utc)
        sig = lib(secret).sign(msg_id, ts, body.decode())
        if rotated:
            # Key rotation: space-separated signatures, the first made with another key.
            sig = lib(OTHER_WHSEC).sign(msg_id, ts, body.decode()) + " " + sig
        if trunc:
            sig = truncate(sig)
        sent = tamper(body) if tamper_body else body
        headers = {f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(int(ts.timestamp())),
                   f"{prefix}-signature": sig}

        def verify():
            try:
                verifier.verify(sent, dict(headers))
                return True, ""
            except (StdVerificationError, SvixVerificationError) as e:
                return False, str(e)[:60]

        return Case(sender, "standard", name, sent, headers, verify=verify,
                    event_id=msg_id, event_type="standard.webhook", expect_code=expect_code)

    cases.append(make("valid"))
    cases.append(make("tampered_body", tamper_body=True))
    cases.append(make("other_secret", secret=OTHER_WHSEC))
    cases.append(make("truncated_signature", trunc=True))
    cases.append(make("stale_timestamp", age=STALE_SECS, expect_code="stale_timestamp"))
    cases.append(make("future_timestamp", age=-STALE_SECS, expect_code="stale_timestamp"))
    cases.append(make("valid_fresh_id"))
    cases.append(make("valid_two_signatures", rotated=True))
    return cases


# --------------------------------------------------------------------------- relay

session = requests.Session()


def run_case(case: Case) -> None:
    try:
        case.lib_ok, case.lib_detail = case.verify()
    except Exception as e:  # a verifier that throws does not accept
        case.lib_ok, case.lib_detail = False, f"threw {type(e).__name__}"
    headers = {"Content-Type": "application/json", **case.headers}
    resp = session.post(f"{RELAY_URL}/hooks/{case.source}", data=case.body, headers=headers, timeout=30)
    case.status = resp.status_code
    try:
        case.answer = resp.json()
    except ValueError:
        case.answer = {"_raw": resp.text[:200]}

    relay_ok = case.status == 200
    if case.lib_ok != relay_ok and not case.known_difference:
        case.problems.append("library and relay disagree")
    if relay_ok and case.lib_ok:
        if case.handshake:
            challenge = json.loads(case.body)["challenge"]
            if case.answer.get("challenge") != challenge:
                case.problems.append(f"challenge not echoed: {case.answer}")
        else:
            if case.answer.get("status") != "accepted":
                case.problems.append(f"answer status {case.answer.get('status')!r}, want 'accepted'")
            if case.answer.get("id") != case.event_id:
                case.problems.append(f"answer id {case.answer.get('id')!r}, want {case.event_id!r}")
    if not relay_ok:
        code = case.answer.get("code")
        if case.status != 401:
            case.problems.append(f"refusal status {case.status}, want 401")
        if code not in DOCUMENTED_REFUSALS:
            case.problems.append(f"refusal code {code!r} not documented")
        elif case.expect_code and code != case.expect_code:
            case.problems.append(f"refusal code {code!r}, want {case.expect_code!r}")


# --------------------------------------------------------------------------- Kafka

def consume(topics: list[str], wanted: dict[str, set[str]]) -> dict[str, list]:
    """Reads the topics from the beginning until every wanted id was seen and the end of every
    partition was reached, or KAFKA_WAIT_SECS passed. Returns topic -> [message, ...]."""
    consumer = Consumer({
        "bootstrap.servers": KAFKA_BROKERS,
        "group.id": "hookrelay-interop-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    consumer.subscribe(topics)
    got: dict[str, list] = {t: [] for t in topics}
    seen: dict[str, set] = {t: set() for t in topics}
    at_eof: dict[tuple, bool] = {}
    deadline = time.monotonic() + KAFKA_WAIT_SECS
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_eof[(msg.topic(), msg.partition())] = True
                    elif msg.error().code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                        print(f"  kafka: {msg.error()}")
                    continue
                at_eof[(msg.topic(), msg.partition())] = False
                got[msg.topic()].append(msg)
                hdrs = dict((k, v) for k, v in (msg.headers() or []))
                if "ce_id" in hdrs and hdrs["ce_id"] is not None:
                    seen[msg.topic()].add(hdrs["ce_id"].decode("utf-8", "replace"))
            complete = all(wanted[t] <= seen[t] for t in topics)
            assigned = consumer.assignment()
            if complete and assigned and all(at_eof.get((tp.topic, tp.partition)) for tp in assigned):
                break
    finally:
        consumer.close()
    return got


def check_records(cases: list[Case]) -> None:
    """Reads the records back; adds what is wrong to the cases' problems."""
    by_topic: dict[str, list[Case]] = {}
    for c in cases:
        by_topic.setdefault(f"{TOPIC_PREFIX}.{c.source}", []).append(c)
    published = {t: [c for c in cs if c.status == 200 and c.lib_ok and not c.handshake] for t, cs in by_topic.items()}
    wanted = {t: {c.event_id for c in cs} for t, cs in published.items()}
    print(f"\nreading {', '.join(sorted(by_topic))} from {KAFKA_BROKERS} (up to {KAFKA_WAIT_SECS:.0f} s)")
    got = consume(sorted(by_topic), wanted)

    for topic in sorted(by_topic):
        records: dict[str, list] = {}
        # Bodies that must never reach the topic: the handshake and every refused request.
        unpublished = {c.body: c for c in by_topic[topic] if c.handshake or c.status != 200}
        for msg in got[topic]:
            hdrs_list = msg.headers() or []
            value = msg.value() or b""
            if value in unpublished:
                c = unpublished[value]
                c.problems.append(f"record: published to {topic} at offset {msg.offset()} but must not be")
            hdrs = {k: v for k, v in hdrs_list}
            ce_id = (hdrs.get("ce_id") or b"").decode("utf-8", "replace")
            records.setdefault(ce_id, []).append(msg)

        for case in published[topic]:
            label = f"{case.sender}/{case.name}"
            msgs = records.get(case.event_id, [])
            if not msgs:
                case.problems.append(f"record: no record with id {case.event_id} in {topic}")
                print(f"{case.sender:<17} {case.name:<25} record MISSING")
                continue
            if len(msgs) > 1:
                print(f"  note: {label}: {len(msgs)} records with id {case.event_id} (at-least-once duplicate)")
            problems = check_record(case, msgs[0])
            case.problems += [f"record: {p}" for p in problems]
            print(f"{case.sender:<17} {case.name:<25} record at offset {msgs[0].offset():<4} "
                  f"{'OK' if not problems else 'BAD: ' + '; '.join(problems)}")


def check_record(case: Case, msg) -> list[str]:
    problems = []
    hdrs_list = [(k, v if v is not None else b"") for k, v in (msg.headers() or [])]
    names = [k for k, _ in hdrs_list]
    if len(set(n.lower() for n in names)) != len(names):
        problems.append(f"duplicate record headers {names}")
    headers = {k: v for k, v in hdrs_list}
    key = msg.key()
    value = msg.value() or b""

    # The CloudEvents SDK's Kafka binding (binary mode), data kept as the exact bytes.
    try:
        event = ce_kafka.from_binary(ce_kafka.KafkaMessage(headers=headers, key=key, value=value),
                                     data_unmarshaller=lambda b: b)
    except Exception as e:
        return [f"cloudevents.kafka.from_binary failed: {type(e).__name__}: {e}"]
    want = {"specversion": "1.0", "id": case.answer.get("id"), "source": f"/sources/{case.source}",
            "type": case.event_type}
    for attr, expected in want.items():
        if event.get(attr) != expected:
            problems.append(f"{attr}={event.get(attr)!r}, want {expected!r}")
    if event.data != case.body:
        problems.append(f"data differs from the request body ({len(event.data or b'')} vs {len(case.body)} bytes)")

    # The new core binding of the same SDK must agree.
    try:
        core = ce_core_kafka.from_binary(ce_core_kafka.KafkaMessage(headers=headers, key=key, value=value), JSONFormat())
        got = (core.get_specversion(), core.get_id(), core.get_source(), core.get_type())
        if got != (want["specversion"], want["id"], want["source"], want["type"]):
            problems.append(f"core binding attributes {got}")
        if core.get_data() != json.loads(case.body):
            problems.append("core binding data differs from the request body")
    except Exception as e:
        problems.append(f"core from_binary failed: {type(e).__name__}: {e}")

    # No credential may travel into the record.
    for name in names:
        if any(w in name.lower() for w in FORBIDDEN_HEADER_WORDS):
            problems.append(f"credential-like record header {name!r}")
    sent_credentials = [v for k, v in case.headers.items()
                        if any(w in k.lower() for w in ("signature", "hmac"))]
    blobs = [v for _, v in hdrs_list] + [key or b""]
    for cred in sent_credentials + SECRET_VALUES:
        if cred and any(cred.encode() in b for b in blobs):
            problems.append("a signature or secret value appears in the record headers/key")
            break
    return problems


# --------------------------------------------------------------------------- main

def main() -> int:
    print(f"hookrelay interop: relay {RELAY_URL}, kafka {KAFKA_BROKERS}, topics {TOPIC_PREFIX}.*")
    libs = ", ".join(f"{d} {version(d)}" for d in
                     ("standardwebhooks", "svix", "slack_sdk", "stripe", "cloudevents", "confluent-kafka", "requests"))
    print(f"libraries: {libs}; librdkafka {ck_libversion()[0]}; node packages from {NODE_DIR}")
    try:
        cases = (github_cases() + shopify_cases() + slack_cases() + stripe_cases()
                 + standard_cases("standardwebhooks") + standard_cases("svix"))
    except Exception as e:
        print(f"could not build the cases: {redact(str(e))}")
        return 1

    print(f"\n{'sender':<17} {'case':<25} {'library':<8} {'relay':<24} result")
    known = []
    for case in cases:
        run_case(case)
        result = "OK" if not case.problems else "MISMATCH: " + "; ".join(case.problems)
        if not case.problems and case.known_difference and case.lib_ok != (case.status == 200):
            result = f"KNOWN DIFFERENCE ({case.known_difference})"
            known.append(f"{case.sender}/{case.name}: library {verdict_of(case)}, relay {relay_of(case)}: "
                         f"{case.known_difference}")
        print(f"{case.sender:<17} {case.name:<25} {verdict_of(case):<8} {relay_of(case):<24} {result}")

    errors = []
    try:
        check_records(cases)
    except Exception as e:
        errors.append(f"kafka check failed: {type(e).__name__}: {redact(str(e))}")

    failed = [c for c in cases if c.problems]
    print()
    for k in known:
        print(f"known difference (not a failure): {k}")
    for c in failed:
        for p in c.problems:
            detail = f" - {c.lib_detail}" if c.lib_detail else ""
            print(redact(f"FAIL {c.sender}/{c.name}: {p} (library {verdict_of(c)}{detail}; relay {relay_of(c)})"))
    for e in errors:
        print(f"FAIL {e}")
    print(f"interop: {len(cases) - len(failed)} passed, {len(failed) + len(errors)} failed")
    return 1 if failed or errors else 0


def verdict_of(case: Case) -> str:
    return "accept" if case.lib_ok else "reject"


def relay_of(case: Case) -> str:
    return str(case.status) + (f" {case.answer.get('code')}" if case.status != 200 else "")


def version(dist: str) -> str:
    from importlib.metadata import version as v
    return v(dist)


if __name__ == "__main__":
    sys.exit(main())
