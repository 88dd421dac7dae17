#!/usr/bin/env python3
"""Benchmark driver for kafka-sqs-bridge (run it through scripts/bench).

Each scenario gets a fresh 12-partition topic, a fresh consumer group and a fresh SQS
endpoint: the in-memory `sqs-stub` (with 0 or 20 ms added round trip) or LocalStack.
  backlog: produce N records first, then start the bridge and time until all N arrived;
  steady:  start the bridge, produce at a fixed rate for a fixed time, measure the window.
Per scenario it reports records/s, bridge CPU seconds per million records (/proc), peak
RSS (VmHWM), end-to-end latency p50/p99 (from the bridge's histogram, interpolated like
Prometheus' histogram_quantile), entries per SendMessageBatch and billed requests per
million records. Figures go to target/bench/results.json (results-quick.json for --quick),
logs to target/bench/logs/RUN/SCENARIO/. Only the standard library; loopback only.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKER = "127.0.0.1:19092"
LOCALSTACK = "http://127.0.0.1:4566"
KAFKA_CLASSPATH = os.path.join(ROOT, ".cache/kafka/libs/*")
KAFKA_TOOLS_LOG4J = os.path.join(ROOT, ".cache/run/kafka/tools-log4j2.properties")
LOCALSTACK_PYTHON = os.path.join(ROOT, ".cache/localstack-venv/bin/python")
BROKER_PID_FILE = os.path.join(ROOT, ".cache/run/kafka/broker.pid")
LOCALSTACK_PID_FILE = os.path.join(ROOT, ".cache/run/localstack/localstack.pid")
CLK_TCK = os.sysconf("SC_CLK_TCK")
POLL_S = 0.1  # how often delivery progress is polled
STALL_S = 45  # a scenario fails when nothing is delivered for this long
MIB = 1024 * 1024


class BenchError(Exception):
    """A scenario failed: lost records, a stall, or a process that exited badly."""


@dataclass
class Scenario:
    name: str
    kind: str  # "backlog" or "steady"
    sink: str = "stub"  # "stub" or "localstack"
    delay_ms: int = 0
    size: int = 256
    count: int = 0  # backlog: records produced before the bridge starts
    rate: int = 0  # steady: records per second
    duration_s: int = 0  # steady: how long the producer runs
    warmup_s: int = 0  # steady: start of the measured window after the producer starts
    keys: int = 1000
    partitions: int = 12
    linger_ms: int = 20
    max_in_flight: int = 128  # the bridge's default ceiling
    quota_per_s: int = 0  # the stub throttles requests above this rate; 0: no quota
    strict_order: bool = True  # the bridge's default: one entry per message group a batch
    max_buffered_bytes: int = 16 * MIB  # the bridge's default
    kafka_properties: dict = field(default_factory=dict)  # librdkafka, as [kafka.properties]


def scenarios(quick):
    """The scenario list; --quick shrinks every one of them."""
    backlog = 20_000 if quick else 1_000_000
    backlog_4k = 10_000 if quick else 200_000
    localstack = 2_000 if quick else 20_000
    duration, warmup = (5, 1) if quick else (30, 5)
    items = [
        Scenario("backlog-256B-0ms", "backlog", count=backlog),
        Scenario("backlog-256B-20ms", "backlog", delay_ms=20, count=backlog),
        # A fixed window of 16, the bridge's start: 16 * 10 / 0.020 = 8,000 rec/s at most.
        Scenario("backlog-256B-20ms-inflight16", "backlog", delay_ms=20, count=backlog,
                 max_in_flight=16),
        # A group has one batch in flight, so 1,000 groups at 20 ms allow 50,000 rec/s at
        # most with one entry per group a batch; several per batch lift that bound.
        Scenario("backlog-256B-20ms-loose-order", "backlog", delay_ms=20, count=backlog,
                 strict_order=False),
        # A FIFO queue without high-throughput mode: 300 requests a second, then throttled.
        Scenario("backlog-256B-20ms-quota300", "backlog", delay_ms=20, count=backlog // 4,
                 quota_per_s=300),
        Scenario("backlog-4KiB-0ms", "backlog", size=4096, count=backlog_4k),
    ]
    # The byte budget trades memory for batch fill. Across budgets, peak RSS minus the
    # budget is the overhead that the budget does not bound: it should not grow with it.
    for mib in (4, 8, 32, 64, 128):
        items.append(Scenario(f"backlog-256B-0ms-{mib}MiB-budget", "backlog", count=backlog,
                              max_buffered_bytes=mib * MIB))
    for mib in (4, 64):
        items.append(Scenario(f"backlog-4KiB-0ms-{mib}MiB-budget", "backlog", size=4096,
                              count=backlog_4k, max_buffered_bytes=mib * MIB))
    items.append(Scenario("localstack-backlog-256B", "backlog", sink="localstack",
                          count=localstack))
    for size, size_name in ((256, "256B"), (4096, "4KiB")):
        for delay in (0, 20):
            for rate in (1_000, 10_000):
                items.append(Scenario(f"steady-{rate // 1000}k-{size_name}-{delay}ms",
                                      "steady", size=size, delay_ms=delay, rate=rate,
                                      duration_s=duration, warmup_s=warmup))
    return items


# ---------------------------------------------------------------- small helpers

def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def wait_until(what, timeout_s, check, hint=""):
    """Calls check() every POLL_S until it returns a true value; fails after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}{hint}")
        time.sleep(POLL_S)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def cpu_seconds(pid):
    """utime + stime of a process, in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid, key):
    """A field of /proc/PID/status such as VmHWM or VmRSS, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_split(pid):
    """Resident MiB by kind of mapping, from /proc/PID/smaps. mimalloc, which serves the
    Rust side, reserves its arenas 1 GiB at a time; librdkafka's malloc is glibc's, whose
    thread arenas are 64 MiB at most, so they land in `other_anonymous` with the stacks."""
    split = {"files": 0, "allocator_arenas": 0, "other_anonymous": 0}
    kind = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                fields = line.split()
                if "-" in fields[0] and not fields[0].endswith(":"):
                    low, high = (int(x, 16) for x in fields[0].split("-"))
                    kind = ("files" if len(fields) > 5 and fields[5].startswith("/")
                            else "allocator_arenas" if high - low >= 1 << 30
                            else "other_anonymous")
                elif fields[0] == "Rss:":
                    split[kind] += int(fields[1])
    except OSError:
        return None
    return {k: rounded(v / 1024) for k, v in split.items()}


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def rounded(value, digits=1):
    return None if value is None else round(value, digits)


# ---------------------------------------------------------------- processes

class Processes:
    """Starts child processes in their own sessions and stops them all on exit."""

    def __init__(self):
        self.running = []

    def start(self, argv, log_path, env=None):
        log_file = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log_file.close()
        proc.log_path = log_path
        self.running.append(proc)
        return proc

    def stop(self, proc, timeout_s=30, first_signal=signal.SIGTERM):
        """SIGTERM (or first_signal), then SIGKILL after timeout_s; returns the exit status."""
        if proc.poll() is None:
            proc.send_signal(first_signal)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log(f"pid {proc.pid} still running {timeout_s} s after SIGTERM; SIGKILL")
                proc.kill()
                proc.wait(10)
        if proc in self.running:
            self.running.remove(proc)
        return proc.returncode

    def stop_all(self):
        for proc in list(self.running):
            self.stop(proc, timeout_s=10)


# ---------------------------------------------------------------- Prometheus text

SAMPLE_RE = re.compile(r'^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """{name: [(labels dict, value)]} from Prometheus text format."""
    metrics = {}
    for line in text.splitlines():
        match = SAMPLE_RE.match(line)
        if not match or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        metrics.setdefault(name, []).append((dict(LABEL_RE.findall(labels or "")),
                                             float(value)))
    return metrics


def metric_sum(metrics, name, **labels):
    """The sum of every series of NAME whose labels include LABELS."""
    return sum(value for series_labels, value in metrics.get(name, [])
               if all(series_labels.get(k) == v for k, v in labels.items()))


def histogram(metrics, name):
    """{upper bound: cumulative count} of a histogram's _bucket series."""
    buckets = {}
    for labels, value in metrics.get(name + "_bucket", []):
        buckets[float(labels["le"])] = buckets.get(float(labels["le"]), 0) + value
    return buckets


def histogram_diff(later, earlier):
    return {le: count - earlier.get(le, 0) for le, count in later.items()}


def histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile: linear interpolation inside the bucket."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if math.isinf(upper):
                return lower  # the highest finite bound, as Prometheus does
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


# ---------------------------------------------------------------- Kafka

def kafka_tool(tool_class, *args, timeout_s=120):
    argv = ["java", "-Xmx256m", "-cp", KAFKA_CLASSPATH]
    if os.path.exists(KAFKA_TOOLS_LOG4J):
        argv.append(f"-Dlog4j2.configurationFile={KAFKA_TOOLS_LOG4J}")
    argv += [f"org.apache.kafka.tools.{tool_class}", "--bootstrap-server", BROKER, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        # A Java stack trace says what went wrong in its non-"at" lines.
        lines = [line for line in result.stderr.splitlines() if not line.strip().startswith("at ")]
        raise BenchError(f"{tool_class} {' '.join(args)} failed: {' / '.join(lines[-3:])}")
    return result.stdout


def create_topic(topic, partitions):
    kafka_tool("TopicCommand", "--create", "--topic", topic, "--partitions", str(partitions),
               "--replication-factor", "1")


def delete_topics(pattern):
    try:
        kafka_tool("TopicCommand", "--delete", "--if-exists", "--topic", pattern)
    except (BenchError, subprocess.TimeoutExpired) as error:
        log(f"could not delete the benchmark topics {pattern}: {error}")


def topic_record_count(topic):
    """Records in the topic: the sum of its partitions' end offsets."""
    output = kafka_tool("GetOffsetShell", "--topic", topic)
    return sum(int(line.rsplit(":", 1)[1]) for line in output.split() if ":" in line)


# ---------------------------------------------------------------- SQS sinks

class StubSink:
    """The in-memory sqs-stub, one per scenario so that its statistics are the scenario's."""

    poll_s = POLL_S

    def __init__(self, procs, binary, delay_ms, quota_per_s, log_dir):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.queue_url = f"{self.endpoint}/000000000000/bench.fifo"
        argv = [binary, "--listen", f"127.0.0.1:{self.port}", "--delay-ms", str(delay_ms),
                "--discard-messages"]
        if quota_per_s:
            argv += ["--request-quota-per-second", str(quota_per_s)]
        self.proc = procs.start(argv, os.path.join(log_dir, "stub.log"))
        self.pid = self.proc.pid
        wait_until("the sqs-stub to listen", 15, self._answers,
                   f"; see {self.proc.log_path}")

    def _answers(self):
        if self.proc.poll() is not None:
            raise BenchError(f"sqs-stub exited with {self.proc.returncode}; "
                             f"see {self.proc.log_path}")
        try:
            return self.stats() is not None
        except OSError:
            return False

    def stats(self):
        return json.loads(http_get(f"{self.endpoint}/_stub/stats")[1])

    def delivered(self):
        return self.stats()["accepted"]

    def summary(self):
        stats = self.stats()
        stats["cpu_s"] = cpu_seconds(self.proc.pid)
        stats["peak_rss_MiB"] = rounded((status_kib(self.proc.pid, "VmHWM") or 0) / 1024)
        return stats


class LocalStackSink:
    """A FIFO queue created in LocalStack with boto3; progress is read with plain HTTP."""

    poll_s = 0.5  # LocalStack shares the cores; do not load it with polls

    def __init__(self, name):
        script = ("import boto3,sys;c=boto3.client('sqs',endpoint_url=sys.argv[1],"
                  "region_name='us-east-1',aws_access_key_id='test',"
                  "aws_secret_access_key='test');"
                  "print(c.create_queue(QueueName=sys.argv[2],"
                  "Attributes={'FifoQueue':'true'})['QueueUrl'])")
        result = subprocess.run([LOCALSTACK_PYTHON, "-c", script, LOCALSTACK, name],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise BenchError(f"creating LocalStack queue {name} failed: {result.stderr[-500:]}")
        self.endpoint = LOCALSTACK
        self.queue_url = result.stdout.strip()
        self.pid = read_pid(LOCALSTACK_PID_FILE)
        self.cpu_at_start = cpu_seconds(self.pid) if self.pid else None

    def call(self, action, **params):
        """One SQS call in the JSON protocol (LocalStack does not check signatures)."""
        request = urllib.request.Request(
            self.endpoint + "/", data=json.dumps({"QueueUrl": self.queue_url, **params}).encode(),
            headers={"Content-Type": "application/x-amz-json-1.0",
                     "X-Amz-Target": f"AmazonSQS.{action}",
                     "Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/"
                                      "sqs/aws4_request, SignedHeaders=host, Signature=0"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def delivered(self):
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        attributes = self.call("GetQueueAttributes", AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(n, 0)) for n in names)

    def summary(self):
        cpu = cpu_seconds(self.pid) if self.pid else None
        used = cpu - self.cpu_at_start if cpu is not None and self.cpu_at_start else None
        return {"accepted": self.delivered(), "localstack_cpu_s": rounded(used, 2)}

    def delete(self):
        try:
            self.call("DeleteQueue")
        except (OSError, ValueError) as error:
            log(f"could not delete LocalStack queue {self.queue_url}: {error}")


# ---------------------------------------------------------------- the bridge

BRIDGE_CONFIG = """\
[kafka]
bootstrap_servers = "{broker}"
group_id = "{group}"
topics = ["{topic}"]
[admin]
listen = "127.0.0.1:{admin_port}"
[[destinations]]
name = "bench"
queue_url = "{queue_url}"
endpoint_url = "{endpoint}"
region = "us-east-1"
[destinations.batch]
linger_ms = {linger_ms}
max_in_flight = {max_in_flight}
strict_order = {strict_order}
[destinations.delivery]
max_buffered_bytes = {max_buffered_bytes}
[kafka.properties]
{kafka_properties}
"""


class Bridge:
    def __init__(self, procs, binary, scenario, topic, group, sink, log_dir):
        self.procs = procs
        self.admin_port = free_port()
        config_path = os.path.join(log_dir, "bridge.toml")
        with open(config_path, "w") as f:
            f.write(BRIDGE_CONFIG.format(
                broker=BROKER, group=group, topic=topic, admin_port=self.admin_port,
                queue_url=sink.queue_url, endpoint=sink.endpoint,
                linger_ms=scenario.linger_ms, max_in_flight=scenario.max_in_flight,
                strict_order=str(scenario.strict_order).lower(),
                max_buffered_bytes=scenario.max_buffered_bytes,
                kafka_properties="".join(f'"{k}" = "{v}"\n'
                                         for k, v in scenario.kafka_properties.items())))
        env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                   RUST_LOG="warn")
        self.started = time.monotonic()
        self.proc = procs.start([binary, "run", "--config", config_path],
                                os.path.join(log_dir, "bridge.log"), env=env)
        self.pid = self.proc.pid

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"the bridge exited with status {self.proc.returncode}; "
                             f"see {self.proc.log_path}")

    def hint(self):
        return f"; bridge log: {self.proc.log_path}"

    def scrape(self):
        return parse_metrics(http_get(f"http://127.0.0.1:{self.admin_port}/metrics")[1])

    def ready(self):
        self.check_alive()
        try:
            return http_get(f"http://127.0.0.1:{self.admin_port}/readyz")[0] == 200
        except (OSError, urllib.error.HTTPError):
            return False

    def sample(self):
        """CPU seconds, peak and current RSS of the bridge process, right now."""
        return {"cpu_s": cpu_seconds(self.pid),
                "peak_rss_kib": status_kib(self.pid, "VmHWM"),
                "rss_kib": status_kib(self.pid, "VmRSS")}

    def stop(self):
        status = self.procs.stop(self.proc, timeout_s=40)
        if status != 0:
            raise BenchError(f"the bridge exited with status {status} after SIGTERM"
                             f"{self.hint()}")


# ---------------------------------------------------------------- measuring

class Profiler:
    """`perf record` attached to the bridge (--perf): a CPU profile of the scenario, and
    its top functions in perf-top.txt next to the bridge's log."""

    def __init__(self, procs, pid, log_dir):
        self.procs = procs
        self.data = os.path.join(log_dir, "perf.data")
        self.top = os.path.join(log_dir, "perf-top.txt")
        argv = ["perf", "record", "-e", "cpu-clock", "-F", "499", "-g", "-p", str(pid),
                "-o", self.data]
        self.proc = procs.start(argv, os.path.join(log_dir, "perf.log"))

    def stop(self):
        self.procs.stop(self.proc, timeout_s=60, first_signal=signal.SIGINT)
        with open(self.top, "w") as out:
            subprocess.run(["perf", "report", "-i", self.data, "--stdio", "--no-children",
                            "--sort", "symbol", "--percent-limit", "0.5", "-g", "none"],
                           stdout=out, stderr=subprocess.DEVNULL, timeout=300)
        log(f"profile: {self.top} (perf report -i {self.data})")


class Progress:
    """Polls the sink until a target count arrives, failing on a stall or a dead bridge."""

    def __init__(self, sink, bridge):
        self.sink, self.bridge = sink, bridge
        self.first_at = None  # monotonic time of the first delivery seen
        self.last_at = None  # monotonic time the count last grew
        self.count = 0
        self.timeline = []  # one [seconds since bridge start, delivered, RSS MiB] a second
        self.peak_rss_kib = 0
        self.split_at_peak = None  # memory_split() at the highest RSS of the timeline

    def poll(self):
        self.bridge.check_alive()
        count = self.sink.delivered()
        now = time.monotonic()
        if count > self.count:
            self.count, self.last_at = count, now
            self.first_at = self.first_at or now
        since_start = now - self.bridge.started
        if not self.timeline or since_start - self.timeline[-1][0] >= 1.0:
            rss = status_kib(self.bridge.pid, "VmRSS") or 0
            self.timeline.append([round(since_start, 1), count, round(rss / 1024, 1)])
            if rss > self.peak_rss_kib:
                self.peak_rss_kib = rss
                self.split_at_peak = memory_split(self.bridge.pid)
        return count

    def wait_for(self, target, what):
        """Waits until `target` records have arrived; bounded by STALL_S without progress."""
        stalled_since = time.monotonic()
        seen = self.count
        while self.poll() < target:
            if self.count > seen:
                seen, stalled_since = self.count, time.monotonic()
            elif time.monotonic() - stalled_since > STALL_S:
                raise BenchError(f"{what}: stalled at {self.count} of {target} records for "
                                 f"{STALL_S} s{self.bridge.hint()}")
            time.sleep(self.sink.poll_s)
        if self.count > target:
            raise BenchError(f"{what}: {self.count} records arrived, more than the "
                             f"{target} produced{self.bridge.hint()}")


def produce(procs, binary, scenario, topic, count, rate, log_dir):
    argv = [binary, "--brokers", BROKER, "--topic", topic, "--count", str(count),
            "--size", str(scenario.size), "--keys", str(scenario.keys), "--rate", str(rate)]
    return procs.start(argv, os.path.join(log_dir, "producer.log"))


def wait_producer(procs, proc, timeout_s):
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the producer did not finish within {timeout_s:.0f} s; "
                         f"see {proc.log_path}")
    procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"the producer exited with {proc.returncode}; see {proc.log_path}")


def latency_ms(buckets):
    return {"p50_ms": rounded(ms(histogram_quantile(0.5, buckets)), 2),
            "p99_ms": rounded(ms(histogram_quantile(0.99, buckets)), 2),
            "latency_buckets": {("+Inf" if math.isinf(le) else f"{le:g}"): int(count)
                                for le, count in sorted(buckets.items())}}


def ms(seconds):
    return None if seconds is None else seconds * 1000


def request_figures(metrics, delivered, earlier=None):
    """Entries per batch and request outcomes, from the bridge's metrics (or their change
    since `earlier`)."""
    def diff(name, **labels):
        value = metric_sum(metrics, name, **labels)
        return value - (metric_sum(earlier, name, **labels) if earlier else 0)

    batches = diff("kafka_sqs_bridge_batch_entries_count")
    entries = diff("kafka_sqs_bridge_batch_entries_sum")
    sizes = histogram(metrics, "kafka_sqs_bridge_batch_entries")
    if earlier:
        sizes = histogram_diff(sizes, histogram(earlier, "kafka_sqs_bridge_batch_entries"))
    # The buckets are 1 to 10 entries: per size, how many batches had it.
    bounds = sorted(le for le in sizes if not math.isinf(le))
    by_size = {f"{le:g}": int(sizes[le] - (sizes[bounds[i - 1]] if i else 0))
               for i, le in enumerate(bounds)}
    return {
        "entries_per_batch": rounded(entries / batches, 2) if batches else None,
        "batches_by_entries": by_size,
        "batches": int(batches),
        "sqs_requests": {o: int(diff("kafka_sqs_bridge_sqs_requests_total", outcome=o))
                         for o in ("ok", "partial", "transient", "request", "destination")},
        "throttled": int(diff("kafka_sqs_bridge_sqs_throttled_requests_total")),
        "in_flight_limit_at_end": int(metric_sum(metrics, "kafka_sqs_bridge_in_flight_limit")),
    }


def billed_per_million(sink_stats, metrics, delivered):
    """The stub counts billed requests; for LocalStack they follow from batch_bytes."""
    if "billed_requests" in sink_stats:
        return rounded(sink_stats["billed_requests"] / delivered * 1e6)
    return billed_from_batch_bytes(metrics, delivered)


def billed_from_batch_bytes(metrics, delivered):
    """ceil(bytes / 64 KiB) per request is exact when every batch fits in 64 KiB; n/a else."""
    buckets = histogram(metrics, "kafka_sqs_bridge_batch_bytes")
    total = buckets.get(math.inf, 0)
    if not total or not delivered or buckets.get(65536.0) != total:
        return None
    return rounded(total / delivered * 1e6)


def process_figures(bridge_sample, delivered):
    cpu = bridge_sample["cpu_s"]
    return {"cpu_s": rounded(cpu, 2),
            "cpu_s_per_M": rounded(cpu / delivered * 1e6, 2) if delivered else None,
            "peak_rss_MiB": rounded((bridge_sample["peak_rss_kib"] or 0) / 1024)}


def budget_figures(bridge_sample, scenario):
    """The byte budget, and how far the peak went past it: what the budget leaves out."""
    budget = scenario.max_buffered_bytes / MIB
    peak = (bridge_sample["peak_rss_kib"] or 0) / 1024
    return {"budget_MiB": rounded(budget), "peak_rss_over_budget_MiB": rounded(peak - budget)}


class MachineLoad:
    """Cores used by the whole machine and by each named process over a period, to tell
    the bridge's share from the broker's, the producer's, the stub's and anything else's
    (such as a build) on the shared cores."""

    def __init__(self, pids):
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.start = self._read()
        self.last_cpu = dict(self.start["cpu"])

    def _read(self):
        busy, total = machine_busy()
        return {"wall": time.monotonic(), "busy": busy, "total": total,
                "cpu": {name: cpu_seconds(pid) for name, pid in self.pids.items()}}

    def tick(self):
        """Remembers the CPU time of processes that may exit before the period ends."""
        for name, pid in self.pids.items():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.last_cpu[name] = cpu

    def figures(self):
        self.tick()
        end = self._read()
        wall = end["wall"] - self.start["wall"]
        ticks = max(1, end["total"] - self.start["total"])
        busy_cores = (end["busy"] - self.start["busy"]) / ticks * (os.cpu_count() or 1)
        figures = {"seconds": rounded(wall, 2), "machine_busy_cores": rounded(busy_cores, 2)}
        accounted = 0.0
        for name, started in self.start["cpu"].items():
            if started is None or self.last_cpu.get(name) is None:
                continue
            cores = (self.last_cpu[name] - started) / wall
            figures[f"{name}_cores"] = rounded(cores, 2)
            accounted += cores
        figures["other_cores"] = rounded(max(0.0, busy_cores - accounted), 2)
        return figures


def busy_cores(interval_s):
    busy0, total0 = machine_busy()
    time.sleep(interval_s)
    busy1, total1 = machine_busy()
    return (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)


def wait_for_quiet(max_wait_s, threshold_cores=0.4):
    """The scenarios share two cores with everything else: waits (bounded) until other
    work, such as a cargo build, has finished, and says so when it has not."""
    waited = 0
    busy = busy_cores(2)
    while busy > threshold_cores and waited < max_wait_s:
        if waited == 0:
            log(f"the machine is busy ({busy:.2f} cores in use); waiting up to "
                f"{max_wait_s} s for it to calm down")
        time.sleep(10)
        waited += 10
        busy = busy_cores(2)
    if busy > threshold_cores:
        log(f"warning: {busy:.2f} cores busy before the scenario; its figures are skewed")
    return {"busy_cores_before": rounded(busy, 2), "waited_s": waited}


# ---------------------------------------------------------------- scenarios

def run_backlog(ctx, scenario, topic, sink_factory, log_dir):
    produced = produce_backlog(ctx, scenario, topic, log_dir)
    sink = sink_factory()
    bridge = ctx.start_bridge(scenario, topic, sink, log_dir)
    profiler = Profiler(ctx.procs, bridge.pid, log_dir) if ctx.profile else None
    load = MachineLoad(process_ids(bridge, sink))
    progress = Progress(sink, bridge)
    progress.wait_for(produced, f"{scenario.name}: draining the backlog")
    load_figures = load.figures()
    sample = bridge.sample()
    metrics = bridge.scrape()
    sink_stats = sink.summary()
    if profiler:
        profiler.stop()
    bridge.stop()

    from_start = progress.last_at - bridge.started
    from_first = progress.last_at - progress.first_at
    result = {
        "produced": produced,
        "delivered": progress.count,
        "records_per_s": rounded(produced / from_first) if from_first > 0 else None,
        "records_per_s_from_bridge_start": rounded(produced / from_start),
        "seconds_to_first_delivery": rounded(progress.first_at - bridge.started, 2),
        "seconds_first_to_last_delivery": rounded(from_first, 2),
        "records_sent_total": int(metric_sum(metrics, "kafka_sqs_bridge_records_sent_total")),
        **process_figures(sample, produced),
        **budget_figures(sample, scenario),
        "rss_split_at_peak_MiB": progress.split_at_peak,
        **latency_ms(histogram(metrics, "kafka_sqs_bridge_end_to_end_latency_seconds")),
        **request_figures(metrics, produced),
        "billed_per_M": billed_per_million(sink_stats, metrics, produced),
        "load_during_drain": load_figures,
        "sink": sink_stats,
        "timeline": progress.timeline,
    }
    return result


def process_ids(bridge, sink, producer=None):
    return {"bridge": bridge.pid, "broker": read_pid(BROKER_PID_FILE), "sink": sink.pid,
            "producer": producer.pid if producer else None}


def produce_backlog(ctx, scenario, topic, log_dir):
    log(f"{scenario.name}: producing {scenario.count} records of {scenario.size} B")
    started = time.monotonic()
    proc = produce(ctx.procs, ctx.producer_bin, scenario, topic, scenario.count, 0, log_dir)
    wait_producer(ctx.procs, proc, timeout_s=120 + scenario.count / 5_000)
    produced = topic_record_count(topic)
    log(f"{scenario.name}: {produced} records in Kafka after "
        f"{time.monotonic() - started:.1f} s")
    if produced != scenario.count:
        raise BenchError(f"the producer wrote {produced} of {scenario.count} records; "
                         f"see {proc.log_path}")
    return produced


def run_steady(ctx, scenario, topic, sink_factory, log_dir):
    sink = sink_factory()
    bridge = ctx.start_bridge(scenario, topic, sink, log_dir)
    wait_until("the bridge to be ready (joined its group)", 60, bridge.ready, bridge.hint())
    count = scenario.rate * scenario.duration_s
    log(f"{scenario.name}: producing {scenario.rate} rec/s for {scenario.duration_s} s")
    producer_started = time.monotonic()
    producer = produce(ctx.procs, ctx.producer_bin, scenario, topic, count, scenario.rate,
                       log_dir)
    progress = Progress(sink, bridge)

    # The measured window: from warmup_s after the producer started until it finished.
    while time.monotonic() - producer_started < scenario.warmup_s:
        progress.poll()
        time.sleep(POLL_S)
    window_start = time.monotonic()
    first, first_sample, first_metrics = progress.poll(), bridge.sample(), bridge.scrape()
    profiler = Profiler(ctx.procs, bridge.pid, log_dir) if ctx.profile else None
    load = MachineLoad(process_ids(bridge, sink, producer))
    deadline = producer_started + scenario.duration_s * 2 + 60
    while producer.poll() is None:
        if time.monotonic() > deadline:
            raise BenchError(f"the producer did not finish; see {producer.log_path}")
        progress.poll()
        load.tick()
        time.sleep(POLL_S)
    window_end = time.monotonic()
    last, last_metrics, last_sample = progress.poll(), bridge.scrape(), bridge.sample()
    load_figures = load.figures()
    if profiler:
        profiler.stop()
    offered_s = window_end - producer_started
    wait_producer(ctx.procs, producer, timeout_s=5)
    lag_at_end = count - last

    progress.wait_for(count, f"{scenario.name}: delivering the rest")
    catch_up_s = max(0.0, progress.last_at - window_end)
    sample = bridge.sample()
    metrics = bridge.scrape()
    sink_stats = sink.summary()
    bridge.stop()
    in_kafka = topic_record_count(topic)
    if in_kafka != count:
        raise BenchError(f"the producer wrote {in_kafka} of {count} records; "
                         f"see {producer.log_path}")

    window_s = window_end - window_start
    window_records = last - first
    window_cpu = last_sample["cpu_s"] - first_sample["cpu_s"]
    window_buckets = histogram_diff(
        histogram(last_metrics, "kafka_sqs_bridge_end_to_end_latency_seconds"),
        histogram(first_metrics, "kafka_sqs_bridge_end_to_end_latency_seconds"))
    offered_rate = count / offered_s
    # Kept up: at the producer's last record, at most 1 s of records was still on its way.
    kept_up = lag_at_end <= offered_rate * 1.0
    result = {
        "produced": count,
        "delivered": progress.count,
        "offered_records_per_s": rounded(offered_rate),
        "records_per_s": rounded(window_records / window_s),
        "window_s": rounded(window_s, 2),
        "kept_up": kept_up,
        "lag_at_producer_end": lag_at_end,
        "bridge_reported_lag": int(metric_sum(last_metrics,
                                              "kafka_sqs_bridge_consumer_lag_records")),
        "seconds_to_deliver_rest": rounded(catch_up_s, 2),
        **process_figures(sample, count),
        "window_cpu_s_per_M": rounded(window_cpu / window_records * 1e6, 2)
        if window_records else None,
        **latency_ms(window_buckets),
        "whole_run_latency": latency_ms(
            histogram(metrics, "kafka_sqs_bridge_end_to_end_latency_seconds")),
        **request_figures(last_metrics, window_records, first_metrics),
        "whole_run_entries_per_batch": request_figures(metrics, count)["entries_per_batch"],
        "billed_per_M": billed_per_million(sink_stats, metrics, count),
        "load_during_window": load_figures,
        "sink": sink_stats,
        "timeline": progress.timeline,
    }
    return result


class Context:
    """What every scenario shares: the binaries, the processes, the run's names."""

    def __init__(self, bin_dir, run_id, log_root, quiet_wait_s, profile):
        self.bridge_bin = find_binary(bin_dir, "kafka-sqs-bridge")
        self.stub_bin = find_binary(bin_dir, "sqs-stub")
        self.producer_bin = find_binary(bin_dir, "load_producer")
        self.run_id = run_id
        self.log_root = log_root
        self.procs = Processes()
        self.quiet_wait_s = quiet_wait_s
        self.profile = profile

    def start_bridge(self, scenario, topic, sink, log_dir):
        group = f"bench-{self.run_id}-{scenario.name}"
        return Bridge(self.procs, self.bridge_bin, scenario, topic, group, sink, log_dir)

    def run(self, scenario):
        log_dir = os.path.join(self.log_root, scenario.name)
        os.makedirs(log_dir, exist_ok=True)
        topic = f"bench-{self.run_id}-{scenario.name}"
        create_topic(topic, scenario.partitions)
        localstack_sink = None

        def sink_factory():
            nonlocal localstack_sink
            if scenario.sink == "localstack":
                localstack_sink = LocalStackSink(f"bench-{self.run_id}-{scenario.name}.fifo")
                return localstack_sink
            return StubSink(self.procs, self.stub_bin, scenario.delay_ms,
                            scenario.quota_per_s, log_dir)

        runner = run_backlog if scenario.kind == "backlog" else run_steady
        quiet = wait_for_quiet(self.quiet_wait_s)
        try:
            return {"machine_before": quiet,
                    **runner(self, scenario, topic, sink_factory, log_dir)}
        finally:
            self.procs.stop_all()
            if localstack_sink:
                localstack_sink.delete()


def find_binary(bin_dir, name):
    for candidate in (os.path.join(bin_dir, name), os.path.join(bin_dir, "examples", name)):
        if os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise BenchError(f"{name} not found in {bin_dir} (or {bin_dir}/examples); build with "
                     "cargo build --release --features sqs-stub --bins --examples")


# ---------------------------------------------------------------- reporting

def summary_line(name, result):
    def show(value):
        return "n/a" if value is None else value

    fields = ["records/s", "cpu_s_per_M", "peak_rss_MiB", "p50_ms", "p99_ms",
              "entries_per_batch", "billed_per_M"]
    line = f"bench: {name} " + " ".join(
        f"{f}={show(result.get(f.replace('records/s', 'records_per_s')))}" for f in fields)
    if "peak_rss_over_budget_MiB" in result:
        line += f" rss_over_budget_MiB={result['peak_rss_over_budget_MiB']}"
    if "kept_up" in result:
        line += (f" offered/s={result['offered_records_per_s']} "
                 f"kept_up={'yes' if result['kept_up'] else 'no'} "
                 f"lag_at_end={result['lag_at_producer_end']}")
    return line


TABLE_COLUMNS = [("records/s", "records_per_s"), ("kept up (lag at end)", None),
                 ("CPU s/M", "cpu_s_per_M"), ("peak RSS MiB", "peak_rss_MiB"),
                 ("RSS over budget MiB", "peak_rss_over_budget_MiB"),
                 ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
                 ("entries/batch", "entries_per_batch"), ("billed/M", "billed_per_M")]


def markdown_table(report):
    """The results as a Markdown table (--table), for docs/performance.md."""
    header = ["scenario"] + [title for title, _ in TABLE_COLUMNS] + ["other cores busy"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for entry in report["scenarios"]:
        if not entry.get("ok"):
            error = " ".join(entry.get("error", "").split())[:160]
            lines.append(f"| {entry['name']} | FAILED: {error} |")
            continue
        result = entry["result"]
        cells = [entry["name"]]
        for _, key in TABLE_COLUMNS:
            if key is None:
                cells.append(f"{'yes' if result['kept_up'] else 'no'} "
                             f"({result['lag_at_producer_end']})" if "kept_up" in result
                             else "")
            else:
                cells.append("" if key not in result else
                             "n/a" if result[key] is None else f"{result[key]:g}")
        load = result.get("load_during_drain") or result.get("load_during_window") or {}
        cells.append(f"{load.get('other_cores', 'n/a')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "kernel": os.uname().release,
            "memory_GiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1)}


def git_commit():
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True)
    return result.stdout.strip() or None


def binary_info(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    modified = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return {"path": path, "sha256": digest.hexdigest(), "modified": modified.isoformat()}


def write_results(path, report):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------- main

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every scenario at a tiny size")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="run only this scenario (repeatable); see --list")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target/release"),
                        help="where kafka-sqs-bridge, sqs-stub and load_producer are")
    parser.add_argument("--quiet-wait", type=int, metavar="SECONDS",
                        help="before each scenario, wait up to this long for other work on "
                             "the machine to finish (default 0 with --quick, else 300)")
    parser.add_argument("--perf", action="store_true",
                        help="profile the bridge with perf record (perf-top.txt per scenario)")
    parser.add_argument("--table", metavar="RESULTS_JSON",
                        help="print the results in RESULTS_JSON as a Markdown table and exit")
    parser.add_argument("--out", help="results file (default target/bench/results.json, "
                                      "results-quick.json with --quick)")
    return parser.parse_args()


def select(args):
    items = scenarios(args.quick)
    if not args.scenario:
        return items
    known = {s.name: s for s in items}
    unknown = [n for n in args.scenario if n not in known]
    if unknown:
        raise SystemExit(f"bench: unknown scenario {', '.join(unknown)}; known: "
                         f"{', '.join(known)}")
    return [known[n] for n in args.scenario]


def main():
    args = parse_args()
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)))
        return 0
    chosen = select(args)
    if args.list:
        for s in chosen:
            print(s.name)
        return 0
    # Ctrl-C and SIGTERM unwind through the finally blocks, which stop every process.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_id = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join(ROOT, "target/bench",
                                   "results-quick.json" if args.quick else "results.json")
    log_root = os.path.join(ROOT, "target/bench/logs", run_id)
    quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0 if args.quick else 300)
    try:
        ctx = Context(args.bin_dir, run_id, log_root, quiet_wait, args.perf)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
              "git_commit": git_commit(), "command": " ".join(["scripts/bench"] + sys.argv[1:]),
              "mode": "quick" if args.quick else "full", "machine": machine_info(),
              "bridge_binary": binary_info(ctx.bridge_bin), "logs": log_root,
              "scenarios": []}
    failures = 0
    try:
        for scenario in chosen:
            log(f"{scenario.name}: start")
            entry = {"name": scenario.name, "parameters": asdict(scenario)}
            started = time.monotonic()
            try:
                entry["result"] = ctx.run(scenario)
                entry["ok"] = True
                print(summary_line(scenario.name, entry["result"]), flush=True)
            except (BenchError, OSError, subprocess.TimeoutExpired) as error:
                failures += 1
                entry["ok"], entry["error"] = False, str(error)
                print(f"bench: {scenario.name} FAILED: {error}", flush=True)
            entry["seconds"] = round(time.monotonic() - started, 1)
            report["scenarios"].append(entry)
            write_results(out, report)
    except KeyboardInterrupt:
        print("bench: interrupted", flush=True)
        return 130
    finally:
        ctx.procs.stop_all()
        delete_topics(f"bench-{run_id}-.*")
    log(f"results in {out}; logs in {log_root}")
    if failures:
        print(f"bench: {failures} of {len(chosen)} scenarios failed", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
