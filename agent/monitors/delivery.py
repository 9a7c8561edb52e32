"""The delivery part of a monitor: ``subscribeParam`` (reminders, retry, batch, callback) and
attributes, as the backend needs them. The vehicle only reads ``refreshEvent``; with
``parse_monitor(..., delivery_problems=False)`` problems here are warnings.
"""

from __future__ import annotations

from agent.monitors.fields import Fields
from agent.monitors.model import (
    ATTRIBUTE_TYPES,
    DEFAULT_RETRY,
    RETRY_POLICIES,
    VARIABLES,
    Attribute,
    BatchNotify,
    RetryPolicy,
    SubscribeParam,
    Webhook,
)


def read_attributes(fields: Fields, *keys: str) -> tuple[Attribute, ...]:
    found = fields.find(*keys)
    if found is not None and found[0] == "attributres":
        fields.report.warn(fields.at("attributres"), "read as attributes (spelling of the docs)")
    out: list[Attribute] = []
    for path, item in fields.array(*keys) or []:
        attr = Fields.of(item, path, fields.report)
        if attr is None:
            continue
        attr.unknown({"type", "key", "value", "secret"})
        attr.boolean("secret", default=False)  # the backend's API masks it (write-only)
        kind = attr.string("type", required=True)
        key = attr.string("key", required=True)
        value = attr.string("value", required=True)
        if kind is not None and kind not in ATTRIBUTE_TYPES:
            fields.report.problem(attr.at("type"), f"must be Header, Body or Query, got {kind!r}")
            continue
        if kind is None or key is None or value is None:
            continue
        if value.startswith("$") and value[1:].lower() not in VARIABLES:
            fields.report.warn(attr.at("value"), f"unknown variable {value!r}, sent as is")
        out.append(Attribute(kind, key, value))
    return tuple(out)


def read_subscribe(fields: Fields) -> SubscribeParam | None:
    sub = fields.child("subscribeParam")
    if sub is None:
        return None
    report = sub.report
    sub.unknown({"refreshEvent", "retryPolicy", "batchNotify", "callback", "callbackAttributes"})
    refresh = sub.integer("refreshEvent", minimum=1)
    if refresh is not None and refresh < 60:
        report.warn(sub.at("refreshEvent"), "below the Stellantis minimum of 60 s; accepted")
    retry = _retry(sub)
    batch = None
    batch_fields = sub.child("batchNotify")
    if batch_fields is not None:
        batch_fields.unknown({"size", "timeWindow"})
        size = batch_fields.integer("size", required=True, minimum=1)
        window = batch_fields.integer("timeWindow", minimum=5)
        batch = None if size is None else BatchNotify(size, 60 if window is None else window)
    webhook = _webhook(sub)
    callback_attributes: tuple[Attribute, ...] = ()
    channels = sub.child("callbackAttributes")
    if channels is not None:
        channels.unknown({"webhook", "websocket", "pushnotif"})
        for channel in ("webhook", "websocket", "pushnotif"):
            callback_attributes += read_attributes(channels, channel)
    return SubscribeParam(refresh, retry, batch, webhook, callback_attributes)


def _retry(sub: Fields) -> RetryPolicy:
    retry = sub.child("retryPolicy")
    if retry is None:
        return DEFAULT_RETRY
    retry.unknown({"policy", "retryNumber", "maxRetryNumber", "retryDelay"})
    policy = retry.string("policy", required=True)
    if policy is not None and policy not in RETRY_POLICIES:
        sub.report.problem(retry.at("policy"), f"must be None, Bounded or Always, got {policy!r}")
        policy = None
    number = retry.integer("retryNumber", "maxRetryNumber")
    delay = retry.integer("retryDelay")
    for key, value in (("retryNumber", number), ("retryDelay", delay)):
        if value is not None and value < 1:
            if policy == "None":  # ignored with None; the docs' model example writes 0
                sub.report.warn(retry.at(key), "ignored with policy None")
            else:
                sub.report.problem(retry.at(key), f"must be at least 1, got {value}")
    number = None if number is None or number < 1 else number
    delay = None if delay is None or delay < 1 else delay
    return RetryPolicy(policy or "None", 3 if number is None else number, delay or 10)


def _webhook(sub: Fields) -> Webhook | None:
    callback = sub.child("callback")
    if callback is None:
        return None
    if "webhook" in callback.obj:
        callback.unknown({"webhook"})
        hook = callback.child("webhook")
        if hook is None:
            return None
    else:  # reference §7.5: target/name directly under callback
        hook = callback
    hook.unknown({"target", "name", "attributes", "attributres"})
    target = hook.string("target", required=True)
    name = hook.string("name", required=True)
    attributes = read_attributes(hook, "attributes", "attributres")
    if target is not None:
        lowered = target.lower()
        if lowered.startswith("http://"):
            # the vehicle does not know the backend's policy (allow_insecure_http): say what
            # the target is, not what the backend will do with it (issue 18)
            sub.report.warn(
                hook.at("target"),
                "plain http, not HTTPS: whether it is delivered is the backend's setting",
            )
        elif not lowered.startswith("https://"):
            sub.report.problem(hook.at("target"), f"not an http(s) URL: {target!r}")
            return None
    if target is None or name is None:
        return None
    return Webhook(target, name, attributes)
