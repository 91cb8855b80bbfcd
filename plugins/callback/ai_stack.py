"""The project's screen output: Ansible's default callback, with only the lines a person reads.

ansible.cfg sets it (`stdout_callback = ai_stack`); molecule and the tests set their own. At
verbosity 0 it prints what changed, what failed, warnings, and the messages the roles print for
people (`debug` tasks and the `assert` tasks that say what they checked: the context, the server
version, the nodes, the capacity, the summary), and hides the rest: plain "ok" results, "included:"
lines, and a play that matched no host. A failure that a block's rescue handles prints one line (its
message's first, cut at 300 characters): the rescue says what went wrong and what to do. A task
still running after AI_STACK_ANNOUNCE_AFTER seconds (default 5) gets its banner at once, so a long
wait says what it waits for, and for how long at most (its name says), while it waits. `-v` (or
ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default) prints everything, as Ansible's default does.
"""
from __future__ import annotations

DOCUMENTATION = """
    name: ai_stack
    type: stdout
    short_description: Ansible's default output without the lines nobody reads
    description:
      - Ansible's default callback; at verbosity 0 it hides ok results other than messages (debug, assert
        with a success message), include lines and plays that matched no host, prints a failure that a
        rescue handles in one line, and shows the banner of a task that runs longer than
        O(announce_after) seconds while it runs.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    options:
      announce_after:
        description: Seconds after which a running task's banner is printed (0 turns this off).
        type: float
        default: 5
        env:
          - name: AI_STACK_ANNOUNCE_AFTER
        ini:
          - section: callback_ai_stack
            key: announce_after
"""

import threading

from ansible import constants as C
from ansible.playbook.block import Block
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.utils.fqcn import add_internal_fqcns

# Results whose "ok" carries a message for people.
MESSAGE_ACTIONS = frozenset(("debug", "ansible.builtin.debug", "ansible.legacy.debug"))
ASSERT_ACTIONS = frozenset(("assert", "ansible.builtin.assert", "ansible.legacy.assert"))
SILENT_ASSERT = "All assertions passed"  # the message of an assert without success_msg
RESCUED_MSG_CHARS = 300


def rescued(task) -> bool:
    """Whether a failure of ``task`` goes to a rescue: the task, or a block around it, sits in the
    ``block`` part of a block that has a ``rescue`` (tasks run as copies: compare their uuids)."""
    child, parent = task, getattr(task, "_parent", None)
    while parent is not None:
        if isinstance(parent, Block) and parent.rescue and any(c._uuid == child._uuid for c in parent.block):
            return True
        child, parent = parent, getattr(parent, "_parent", None)
    return False


def first_line(result: dict) -> str:
    """A failed result's message in one line of at most RESCUED_MSG_CHARS characters."""
    lines = str(result.get("msg") or "failed").strip().splitlines() or ["failed"]
    line = lines[0]
    return line if len(line) <= RESCUED_MSG_CHARS else line[:RESCUED_MSG_CHARS] + " ..."


def worth_showing(action: str, result: dict) -> bool:
    """Whether an unchanged, successful result is shown at verbosity 0."""
    if result.get("changed") or result.get("warnings") or result.get("deprecations") or result.get("exception"):
        return True
    if action in MESSAGE_ACTIONS:
        return True
    if action in ASSERT_ACTIONS:
        return bool(result.get("msg")) and result.get("msg") != SILENT_ASSERT
    return False


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "ai_stack"

    def __init__(self):
        super().__init__()
        self._pending_play = None
        self._timers: dict[str, threading.Timer] = {}
        self._banner_lock = threading.RLock()

    def _quiet(self) -> bool:
        return self._display.verbosity < 1

    # A play's banner waits for its first shown line: a play that matched no host prints nothing.
    def v2_playbook_on_play_start(self, play):
        if not self._quiet():
            return super().v2_playbook_on_play_start(play)
        self._play = play
        self._pending_play = play
        return None

    def v2_playbook_on_no_hosts_matched(self):
        if not self._quiet():
            super().v2_playbook_on_no_hosts_matched()

    def v2_playbook_on_include(self, included_file):
        if not self._quiet():
            super().v2_playbook_on_include(included_file)

    def _clean_results(self, result, task_name):
        super()._clean_results(result, task_name)
        # An assert that passed says its message, like a debug task ("changed: false" adds nothing).
        if self._quiet() and task_name in ASSERT_ACTIONS and "msg" in result and not result.get("changed"):
            result.pop("changed", None)

    def _print_task_banner(self, task):
        with self._banner_lock:
            if self._last_task_banner == task._uuid:
                return
            if self._pending_play is not None:
                play, self._pending_play = self._pending_play, None
                super().v2_playbook_on_play_start(play)
            super()._print_task_banner(task)

    # A task still running after announce_after seconds: its banner now, not when it ends.
    def v2_playbook_on_task_start(self, task, is_conditional):
        super().v2_playbook_on_task_start(task, is_conditional)
        if self._play.strategy not in add_internal_fqcns(("free", "host_pinned")):
            # One task at a time: a task that sent no result (a meta task) is over when the next starts.
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        after = self.get_option("announce_after") or 0
        if self._quiet() and after > 0 and task._uuid not in self._timers:
            timer = threading.Timer(after, self._print_task_banner, args=(task,))
            timer.daemon = True
            self._timers[task._uuid] = timer
            timer.start()

    def _stop_timer(self, result) -> None:
        timer = self._timers.pop(result.task._uuid, None)
        if timer is not None:
            timer.cancel()

    def v2_runner_on_ok(self, result):
        self._stop_timer(result)
        if not self._quiet():
            return super().v2_runner_on_ok(result)
        if isinstance(result.task, TaskInclude):
            return None
        shown = self._last_task_banner == result.task._uuid
        if "results" in result.result:  # a loop's total: its items were shown or hidden one by one
            return super().v2_runner_on_ok(result) if shown else None
        if shown or worth_showing(result.task.action, result.result):
            return super().v2_runner_on_ok(result)
        return None

    def v2_runner_item_on_ok(self, result):
        self._stop_timer(result)
        if not self._quiet():
            return super().v2_runner_item_on_ok(result)
        if worth_showing(result.task.action, result.result) or self._last_task_banner == result.task._uuid:
            return super().v2_runner_item_on_ok(result)
        return None

    # A failure that a rescue handles: one line; the rescue explains it.
    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._stop_timer(result)
        if not self._quiet() or ignore_errors or not rescued(result.task):
            return super().v2_runner_on_failed(result, ignore_errors)
        if "results" in result.result:  # a loop's total: its failed items were shown one by one
            return None
        self._rescued_line(result, "")
        return None

    def v2_runner_item_on_failed(self, result):
        self._stop_timer(result)
        if not self._quiet() or not rescued(result.task):
            return super().v2_runner_item_on_failed(result)
        self._rescued_line(result, f" (item={self._get_item_label(result.result)})")
        return None

    def _rescued_line(self, result, item: str) -> None:
        self._print_task_banner(result.task)
        self._handle_warnings(result.result)
        self._display.display(f"failed: [{result.host.get_name()}]{item} (rescued below): {first_line(result.result)}",
                              color=C.COLOR_ERROR)

    def v2_runner_retry(self, result):
        self._print_task_banner(result.task)
        return super().v2_runner_retry(result)

    def v2_playbook_on_stats(self, stats):
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        return super().v2_playbook_on_stats(stats)


def _stopping_the_timer(name: str):
    """Ansible's default handler of event `name`, after the task's announce timer is stopped."""
    def handler(self, result, *args, **kwargs):
        self._stop_timer(result)
        return getattr(DefaultCallback, name)(self, result, *args, **kwargs)
    handler.__name__ = name
    return handler


# Any other result of a task also means its banner needs no announcing.
for _event in ("v2_runner_on_skipped",
               "v2_runner_item_on_skipped", "v2_runner_on_unreachable"):
    setattr(CallbackModule, _event, _stopping_the_timer(_event))
