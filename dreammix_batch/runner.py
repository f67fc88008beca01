"""Generating every missing image of a batch, cases shared among ComfyUI servers, one worker thread each."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreammix_core.errors import DreamMixInputError

from .cases import Case, scene_with_alpha
from .client import ComfyClient, ServerError, check_server
from .workflow import Options, find_roles, prepare_graph

OUTPUT_PREFIX = "dreammix_batch"


def image_path(out: Path, case: Case, seed: int) -> Path:
    return out / "images" / case.name / f"seed{seed}.png"


@dataclass
class RunReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    by_server: dict[str, list[str]] = field(default_factory=dict)
    interrupted: bool = False
    """Ctrl-C stopped the run: the images then running were finished, the rest is left for the next run."""


class _Progress:
    """tqdm when it is installed, else one line per finished image."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.lock = total, 0, threading.Lock()
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="image", desc="DreamMix batch")
        except ImportError:
            self.bar = None

    def step(self, what: str) -> None:
        with self.lock:
            self.done += 1
            if self.bar is not None:
                self.bar.set_postfix_str(what, refresh=False)
                self.bar.update(1)
            else:
                print(f"[{self.done}/{self.total}] {what}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_cases(
    cases: Sequence[Case],
    seeds: Sequence[int],
    out: Path,
    servers: Sequence[str],
    template: dict[str, Any],
    options: Options = Options(),
    *,
    limit: int | None = None,
    timeout: float = 1800.0,
    stop: threading.Event | None = None,
) -> RunReport:
    """Generates every missing image, cases shared among the servers; at most `limit` cases run this time."""
    report = RunReport()
    todo: queue.Queue[Case] = queue.Queue()
    pending = 0
    for case in cases:
        missing = [seed for seed in seeds if not image_path(out, case, seed).is_file()]
        if not missing:
            report.skipped.append(case.name)
        elif limit is None or todo.qsize() < limit:
            todo.put(case)
            pending += len(missing)
    if todo.empty():
        return report
    clients = [ComfyClient(url) for url in servers]
    probe = prepare_graph(template, "probe.png", "probe", 0, OUTPUT_PREFIX, options)
    for client in clients:
        check_server(client, probe)
    stop = stop or threading.Event()
    progress = _Progress(pending)
    lock = threading.Lock()

    def worker(client: ComfyClient, finished: threading.Event) -> None:
        try:
            work(client)
        finally:
            finished.set()

    def work(client: ComfyClient) -> None:
        while not stop.is_set():
            try:
                case = todo.get_nowait()
            except queue.Empty:
                return
            try:
                name = client.upload_image(scene_with_alpha(case), f"{OUTPUT_PREFIX}_{case.name}.png")
                for seed in seeds:
                    target = image_path(out, case, seed)
                    if target.is_file() or stop.is_set():
                        continue
                    graph = prepare_graph(template, name, case.prompt, seed, f"{OUTPUT_PREFIX}/{case.name}", options)
                    png = client.run(graph, find_roles(graph).save, timeout)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_suffix(".part")
                    partial.write_bytes(png)
                    partial.replace(target)  # only a complete image counts as done
                    progress.step(f"{case.name} seed {seed}")
                with lock:
                    report.ran.append(case.name)
                    report.by_server.setdefault(client.url, []).append(case.name)
            except Exception as error:  # one case failing must not stop the others; the report lists it
                with lock:
                    report.failed[case.name] = f"{type(error).__name__}: {error}"
                    if isinstance(error, (ServerError, DreamMixInputError)):
                        report.failed[case.name] = str(error)

    # Waited for through events, not Thread.join: a join interrupted by Ctrl-C can take a running thread for
    # finished on Python < 3.13 (python/cpython#90882), and the image it was making would be lost.
    finished = [threading.Event() for _ in clients]
    for client, done in zip(clients, finished):
        threading.Thread(target=worker, args=(client, done), name=client.url, daemon=True).start()
    try:
        for done in finished:
            while not done.wait(0.5):
                pass
    except KeyboardInterrupt:
        stop.set()
        report.interrupted = True
        print("\nStopping after the images now running; run the same command again to resume.", file=sys.stderr)
        for done in finished:
            done.wait()
    finally:
        progress.close()
    return report
