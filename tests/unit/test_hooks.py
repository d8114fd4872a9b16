"""Hooks as the user writes them (Stash's one handler, or a list), where they go in the
plan, which post hooks run after which ending, and what a failing one does."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.catalog import builtin_functions, builtin_tasks
from workflows.errors import InvalidResource, NotFound
from workflows.hooks import (
    ResolvedHook,
    mask,
    post_hook_failure,
    resolve_hooks,
    runs_after,
    truncate,
    with_hooks,
)
from workflows.parsing import parse_resource
from workflows.plan import resolve_task
from workflows.resources import BackupConfiguration, HookTemplate
from workflows.resources.hooks import (
    BackupHooks,
    ExecutionPolicy,
    FailurePolicy,
    HookAction,
    RestoreHooks,
    duration_seconds,
)


def config(hooks: dict[str, Any]) -> BackupConfiguration:
    parsed = parse_resource({
        "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
        "metadata": {"name": "nightly"},
        "spec": {"repository": {"name": "repo"}, "target": {"ref": {"name": "db"}},
                 "hooks": hooks}}, source="backup.yaml")
    assert isinstance(parsed, BackupConfiguration)
    return parsed


def template(name: str, spec: dict[str, Any]) -> HookTemplate:
    parsed = parse_resource({"apiVersion": "stashq.io/v1alpha1", "kind": "HookTemplate",
                             "metadata": {"name": name}, "spec": spec})
    assert isinstance(parsed, HookTemplate)
    return parsed


def test_a_stash_manifest_with_one_handler_per_phase_parses_unchanged() -> None:
    hooks = config({"preBackup": {"exec": {"command": ["/bin/sh", "-c", "sync"]},
                                  "containerName": "mysql"},
                    "postBackup": {"httpPost": {"host": "hooks.example", "port": 8080,
                                                "path": "done", "scheme": "HTTPS"},
                                   "executionPolicy": "OnFailure"}}).spec.hooks
    (pre,), (post,) = hooks.of("preBackup"), hooks.of("postBackup")
    assert pre.exec is not None and pre.exec.command[-1] == "sync"
    assert pre.container_name == "mysql"
    assert post.http_post is not None
    assert post.http_post.address() == "https://hooks.example:8080/done"
    assert post.execution_policy is ExecutionPolicy.ON_FAILURE


@pytest.mark.parametrize(("hooks", "message"), [
    ({"preBackup": {"exec": {"command": ["x"]}, "executionPolicy": "Always"}},
     "spec.hooks: preBackup: executionPolicy and failurePolicy are for post hooks"),
    ({"postBackup": [{"sql": {"statements": ["SELECT 1"]}, "exec": {"command": ["x"]}}]},
     r"spec.hooks.postBackup\[0\]: give exactly one of exec, httpGet"),
    ({"postBackup": [{"name": "a", "sql": {"statements": ["SELECT 1"]}},
                     {"name": "a", "sql": {"statements": ["SELECT 2"]}}]},
     "two hooks of postBackup have the same name"),
    ({"preBackup": [{"sql": {"statements": ["SELECT 1"]}, "timeout": "soon"}]},
     r'timeout: "soon" is not a duration'),
    ({"preBackup": [{"sql": {"statements": ["SELECT 1"]}, "timeout": "2h"}]},
     "timeout: Input should be less than or equal to 3600"),
    ({"postBackup": [{"httpGet": {"path": "/x"}}]}, "name either url or host"),
    ({"postBackup": [{"sql": {"statements": ["SELECT 1"]}, "executionPolicy": "Sometimes"}]},
     "executionPolicy"),
    ({"preRestore": [{"sql": {"statements": ["SELECT 1"]}}]},
     "spec.hooks.preRestore: is not a known field"),
])
def test_bad_hooks_are_refused_naming_the_field(hooks: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidResource, match=message) as caught:
        config(hooks)
    assert str(caught.value).startswith('backup.yaml: BackupConfiguration "nightly": spec.hooks')


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("2m", 120.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("1m30s", 90.0)])
def test_durations_read_as_go_writes_them(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "30", "1d", "s", "-1s"])
def test_other_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        duration_seconds(text)


@pytest.mark.parametrize(("policy", "succeeded", "runs"), [
    (ExecutionPolicy.ALWAYS, True, True),
    (ExecutionPolicy.ALWAYS, False, True),
    (ExecutionPolicy.ON_SUCCESS, True, True),
    (ExecutionPolicy.ON_SUCCESS, False, False),
    (ExecutionPolicy.ON_FAILURE, True, False),
    (ExecutionPolicy.ON_FAILURE, False, True),
    (ExecutionPolicy.ON_FINAL_RETRY_FAILURE, True, False),
    (ExecutionPolicy.ON_FINAL_RETRY_FAILURE, False, True),
])
def test_which_post_hooks_run_after_which_ending(policy: ExecutionPolicy, succeeded: bool,
                                                 runs: bool) -> None:
    assert runs_after(policy, succeeded) is runs


def backup_plan() -> list[str]:
    return [s.step for s in resolve_task(builtin_tasks()["mariadb-backup-10.11"],
                                         builtin_functions()).steps]


def test_hook_steps_go_before_the_data_step_and_after_the_status_step() -> None:
    plan = resolve_task(builtin_tasks()["mariadb-backup-10.11"], builtin_functions())
    hooks = config({"preBackup": [{"sql": {"statements": ["SELECT 1"]}}],
                    "postBackup": [{"sql": {"statements": ["SELECT 1"]}}]}).spec.hooks
    steps = with_hooks(plan, hooks, "backup").steps
    assert [s.step for s in steps] == [
        "stashq.precheck", "stashq.pre_hooks", "stashq.dump_upload", "stashq.retention",
        "stashq.update_status", "stashq.post_hooks", "stashq.push_metrics"]
    assert steps[1].params == {"phase": "preBackup"}
    assert steps[5].params == {"phase": "postBackup"}
    assert with_hooks(plan, BackupHooks(), "backup") == plan  # no hooks: no step


def test_restore_hooks_go_around_the_restore_step() -> None:
    plan = resolve_task(builtin_tasks()["mariadb-restore-10.11"], builtin_functions())
    hooks = RestoreHooks.model_validate({"postRestore": {"sql": {"statements": ["x"]}}})
    assert [s.step for s in with_hooks(plan, hooks, "restore").steps] == [
        "stashq.precheck", "stashq.restore_stream", "stashq.update_status",
        "stashq.post_hooks", "stashq.push_metrics"]


def test_a_hook_template_gives_action_timeout_and_retries_unless_the_hook_says() -> None:
    hooks = config({"postBackup": [
        {"hookTemplate": {"name": "notify"}},
        {"name": "quick", "hookTemplate": {"name": "notify"}, "timeout": "5s",
         "maxRetry": 0, "failurePolicy": "Ignore"},
        {"sql": {"statements": ["SELECT 1"]}}]}).spec.hooks
    templates = {"notify": template("notify", {"httpGet": {"url": "http://x/"},
                                               "timeout": "2m", "maxRetry": 3})}
    first, second, third = resolve_hooks(hooks, "postBackup", templates)
    assert (first.label, first.timeout_s, first.retries) == ("notify", 120.0, 3)
    assert first.action.kind == "httpGet"
    assert (second.label, second.timeout_s, second.retries) == ("quick", 5.0, 0)
    assert second.on_failure is FailurePolicy.IGNORE
    assert (third.label, third.timeout_s, third.retries) == ("postBackup[2]", 60.0, 0)
    with pytest.raises(NotFound, match='postBackup hook "notify": HookTemplate "notify" '
                                       "does not exist"):
        resolve_hooks(hooks, "postBackup", {})


def hook(on_failure: FailurePolicy) -> ResolvedHook:
    return ResolvedHook(label="notify", action=HookAction(), timeout_s=1, retries=0,
                        on_failure=on_failure)


@pytest.mark.parametrize(("on_failure", "succeeded", "reason"), [
    (FailurePolicy.FAIL, True, 'postBackup hook "notify" failed: 503'),
    (FailurePolicy.IGNORE, True, None),
    (FailurePolicy.FAIL, False, None),   # the session failed already: its reason stands
    (FailurePolicy.IGNORE, False, None),
])
def test_a_failing_post_hook_fails_a_succeeded_session_as_its_policy_says(
        on_failure: FailurePolicy, succeeded: bool, reason: str | None) -> None:
    assert post_hook_failure(hook(on_failure), phase="postBackup", error="503",
                             session_succeeded=succeeded) == reason


def test_output_is_cut_to_its_end() -> None:
    assert truncate("short") == "short"
    cut = truncate("x" * 10 + "the error", limit=9)
    assert cut == "[10 characters cut]…the error"


@pytest.mark.parametrize(("text", "secrets", "shown"), [
    ("MYSQL_PWD=s3cr3t-pw\nok", ["s3cr3t-pw"], "MYSQL_PWD=******\nok"),
    ("token abcd and abcdef", ["abcd", "abcdef"], "token ****** and ******"),  # longest first
    ("root@db: fine", ["", "pw"], "root@db: fine"),  # empty or short: not masked
    ("a s3cr3t-pw b s3cr3t-pw", ["s3cr3t-pw"], "a ****** b ******"),
])
def test_secrets_are_masked_in_a_hooks_output(text: str, secrets: list[str],
                                              shown: str) -> None:
    assert mask(text, secrets) == shown
