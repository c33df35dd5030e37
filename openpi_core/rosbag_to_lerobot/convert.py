"""Many bags -> one LeRobot dataset: discovery, worker processes, cross-bag checks, aggregation, read-back, and the
`openpi-convert-rosbag` command line.

Bags are converted in worker processes, each into its own LeRobot dataset, which are then aggregated with
`lerobot.datasets.aggregate`. Everything is written under a staging folder beside the output, read back, and moved
into place at the end: a bad bag never leaves half a dataset. Without `skip_bad`, the first bad bag stops the
conversion and nothing is written; with it, bad bags are reported and left out. SIGINT/SIGTERM stop the workers,
remove the staging folder and exit 130/143, leaving any previous dataset at the output untouched.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

from openpi_core.rosbag_to_lerobot.bag_index import Candidate, discover
from openpi_core.rosbag_to_lerobot.errors import ConversionError, MappingError
from openpi_core.rosbag_to_lerobot.lerobot_writer import check_dataset, convert_bag
from openpi_core.rosbag_to_lerobot.mapping import TopicMapping, load_mapping
from openpi_core.rosbag_to_lerobot.report import REPORT_NAME, BagReport, ConversionResult, format_report

__all__ = ["Interrupted", "convert", "main"]

logger = logging.getLogger(__name__)


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a conversion."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def _quiet_libraries() -> None:
    """LeRobot logs progress on the root logger and `datasets` draws a bar per episode: keep the output ours."""
    logging.getLogger().setLevel(logging.WARNING)
    try:
        import datasets  # noqa: PLC0415

        datasets.disable_progress_bars()
    except ImportError:
        pass


_progress_queue: Any = None  # a worker process's queue to the parent's progress bar


def _worker_init(progress_queue: Any) -> None:
    """Worker processes leave signals to the parent, which ends them, and report progress on a queue given at
    their start (no manager process that could die first)."""
    global _progress_queue  # noqa: PLW0603 - one per worker process
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    _progress_queue = progress_queue
    _quiet_libraries()


def _worker(path: str, mapping: TopicMapping, part_root: str) -> BagReport:
    def progress(kind: str, value: int) -> None:
        if _progress_queue is not None:
            _progress_queue.put((kind, value))

    try:
        return convert_bag(Path(path), mapping, Path(part_root), progress)
    except ConversionError as error:
        message = str(error)
    except Exception as error:
        logger.exception("converting %s", path)
        message = str(ConversionError(path, f"{type(error).__name__}: {error}"))
    shutil.rmtree(part_root, ignore_errors=True)
    return BagReport(bag=path, error=message)


def _consistency_error(reference: BagReport, report: BagReport) -> str | None:
    if report.camera_shapes != reference.camera_shapes:
        return f"camera image sizes {report.camera_shapes} differ from bag {reference.bag}'s {reference.camera_shapes}"
    if report.state_names != reference.state_names:
        return f"joint names {report.state_names} differ from bag {reference.bag}'s {reference.state_names}"
    if report.action_names != reference.action_names:
        return f"action names {report.action_names} differ from bag {reference.bag}'s {reference.action_names}"
    return None


def convert(
    bags: Sequence[Path | Candidate],
    mapping: TopicMapping,
    output: Path,
    *,
    workers: int = 1,
    skip_bad: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> ConversionResult:
    """Convert `bags` into one LeRobot dataset at `output` (written elsewhere, read back, moved into place)."""
    begin = time.perf_counter()
    output = Path(output).resolve()
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    candidates = [b if isinstance(b, Candidate) else Candidate(Path(b)) for b in bags]
    if not candidates:
        raise ValueError("no bags to convert")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        unreadable = [
            BagReport(bag=str(c.path), error=str(ConversionError(c.path, c.problem))) for c in candidates if c.problem
        ]
        if unreadable and not skip_bad:
            raise ConversionError.from_text(
                f"{unreadable[0].error} (nothing was written; --skip-bad leaves bad bags out)"
            )
        readable = [c.path for c in candidates if not c.problem]
        reports = unreadable + _convert_all(
            readable, mapping, staging / "parts", workers, show_progress=show_progress, stop_on_error=not skip_bad
        )
        good: list[BagReport] = []
        for report in reports:
            if report.error is None and good and (problem := _consistency_error(good[0], report)):
                report.error = str(ConversionError(report.bag, problem))
            if report.error is not None:
                if not skip_bad:
                    raise ConversionError.from_text(
                        f"{report.error} (nothing was written; --skip-bad leaves bad bags out)"
                    )
                logger.error("skipped: %s", report.error)
                continue
            good.append(report)
        if not good:
            raise ConversionError(candidates[0].path, "no bag could be converted (all bad); nothing was written")
        dataset = staging / "dataset"
        if len(good) == 1:
            Path(good[0].part).rename(dataset)
        else:
            from lerobot.datasets.aggregate import aggregate_datasets  # noqa: PLC0415

            logger.info("aggregating %d bags", len(good))
            aggregate_datasets(
                [mapping.repo_id] * len(good), mapping.repo_id, roots=[Path(r.part) for r in good], aggr_root=dataset
            )
        check_dataset(dataset, mapping.repo_id)
        result = ConversionResult(
            output=output,
            reports=reports,
            episodes=sum(len(r.episodes) for r in good),
            frames=sum(r.frames for r in good),
            seconds=time.perf_counter() - begin,
        )
        result.write_json(dataset / REPORT_NAME)
        if output.exists():  # --overwrite: the old dataset goes only once the new one is complete
            shutil.rmtree(output)
        dataset.rename(output)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _convert_all(
    bags: Sequence[Path], mapping: TopicMapping, parts: Path, workers: int, *, show_progress: bool, stop_on_error: bool
) -> list[BagReport]:
    """Every bag's report, in order (a bag not converted because an earlier one failed has none)."""
    from tqdm import tqdm  # noqa: PLC0415

    parts.mkdir()
    if not bags:
        return []
    if workers == 0:  # in this process, one bag after another (debugging; no process start-up)
        reports = []
        for i, bag in enumerate(bags):
            reports.append(_worker(str(bag), mapping, str(parts / f"{i:05d}")))
            if reports[-1].error and stop_on_error:
                break
        return reports
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    pool = futures.ProcessPoolExecutor(
        max_workers=max(1, min(workers, len(bags))),
        mp_context=context,
        initializer=_worker_init,
        initargs=(progress_queue,),
    )
    try:
        jobs = {pool.submit(_worker, str(bag), mapping, str(parts / f"{i:05d}")): i for i, bag in enumerate(bags)}
        reports: list[BagReport | None] = [None] * len(bags)
        bar = tqdm(total=0, unit="frame", desc=f"converting {len(bags)} bag(s)", disable=not show_progress)
        pending = set(jobs)
        while pending:
            done, pending = futures.wait(pending, timeout=0.2)
            _drain(progress_queue, bar)
            for job in done:
                report = job.result()
                reports[jobs[job]] = report
                if report.error and stop_on_error:
                    for other in pending:
                        other.cancel()  # those not started yet; running ones finish (their parts are discarded)
                    pending = {other for other in pending if not other.cancelled()}
        _drain(progress_queue, bar)
        bar.close()
        pool.shutdown()
    except BaseException:  # Interrupted (or a broken worker): end the workers now rather than wait for them
        children = multiprocessing.active_children()
        for process in children:
            process.kill()  # they ignore SIGINT/SIGTERM (left to this process)
        for process in children:
            process.join(timeout=5)  # gone before the staging folder they write into is removed
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        progress_queue.close()
        progress_queue.cancel_join_thread()
    return [r for r in reports if r is not None]


def _drain(progress_queue: Any, bar: Any) -> None:
    while True:
        try:
            kind, value = progress_queue.get_nowait()
        except queue.Empty:
            return
        if kind == "total":
            bar.total += value
            bar.refresh()
        else:
            bar.update(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="openpi-convert-rosbag",
        description="Convert recorded rosbag2 (sqlite3, mcap) or ROS 1 bags into one LeRobot v3.0 dataset.",
    )
    parser.add_argument("bags", nargs="+", help="rosbag2 folders, .bag files, or folders of them at any depth")
    parser.add_argument("--mapping", required=True, help="YAML mapping of topics to features (docs/demonstrations.md)")
    parser.add_argument("--output", required=True, help="dataset folder to create (LeRobot root)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="bags converted in parallel worker processes (0: one after another in this process)",
    )
    parser.add_argument("--skip-bad", action="store_true", help="leave bad bags out (reported) instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output once the new one is done")
    parser.add_argument("--report", help="also write the validation report (JSON) here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        mapping = load_mapping(args.mapping)
        candidates = discover(args.bags)
        result = convert(
            candidates,
            mapping,
            Path(args.output),
            workers=args.workers,
            skip_bad=args.skip_bad,
            overwrite=args.overwrite,
            show_progress=not args.quiet,
        )
    except Interrupted as stop:
        print(f"interrupted ({stop}): nothing was written; {args.output} is as it was", file=sys.stderr)
        return 128 + stop.signum
    except (ConversionError, MappingError, FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(format_report(result))
    if args.report:
        result.write_json(Path(args.report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
