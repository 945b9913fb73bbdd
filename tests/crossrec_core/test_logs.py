"""Dropping one known log line of a library, and only that line."""

from __future__ import annotations

import logging

import pytest

from crossrec_core.logs import MessageFilter, drop_log_messages, log_messages_dropped


def test_only_the_matching_lines_are_dropped_and_only_inside_the_block(caplog):
    log = logging.getLogger("crossrec.test.lib")
    with caplog.at_level(logging.WARNING, logger="crossrec.test.lib"):
        with log_messages_dropped("crossrec.test.lib", r"Task .* ran for [\d.]+s"):
            log.warning("Task %r ran for %.3fs (>%.3fs threshold)", "poll", 0.6, 0.1)
            log.warning("Task %s left RUNNING after step", "poll")  # a real problem: kept
        log.warning("Task %r ran for %.3fs (>%.3fs threshold)", "poll", 0.7, 0.1)  # after the block: kept
    assert [r.getMessage() for r in caplog.records] == [
        "Task poll left RUNNING after step", "Task 'poll' ran for 0.700s (>0.100s threshold)"]
    assert not log.filters


def test_root_records_and_a_persistent_filter_installed_once(caplog):
    with caplog.at_level(logging.WARNING):
        with log_messages_dropped("root", "Please consider pre-processing"):
            logging.warning("Please consider pre-processing before quantization. See ...")
            logging.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    name = "crossrec.test.persistent"
    drop_log_messages(name, "is_fx_tracing will return true")
    drop_log_messages(name, "is_fx_tracing will return true")
    assert len(logging.getLogger(name).filters) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=name):
        logging.getLogger(name).warning("is_fx_tracing will return true for both fx.symbolic_trace and torch.export.")
        logging.getLogger(name).warning("a real warning")
    assert [r.getMessage() for r in caplog.records] == ["a real warning"]


@pytest.mark.parametrize("pattern", ["", None])
def test_an_empty_pattern_is_refused(pattern):
    with pytest.raises(ValueError, match="pattern="):
        MessageFilter(pattern)
