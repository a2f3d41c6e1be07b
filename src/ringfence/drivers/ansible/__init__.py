"""The ``ansible`` driver: a rollout's operations as runs of the team's own playbooks, through ansible-runner.

The package follows the driver's seams: :mod:`.options` (the options, declared once), :mod:`.inventory`
(hosts and the environment of every ansible process), :mod:`.events` (what a run did, host by host),
:mod:`.ledger` (what a rollout had, kept between processes), :mod:`.process` (detached runs and the run
process) and :mod:`.driver` (:class:`AnsibleDriver`, the protocol over them).

Each operation on a batch is one ``ansible-playbook`` run of the matching playbook, limited to the batch's
hosts, with the extra variables ``ringfence_product``, ``ringfence_version``, ``ringfence_rollout`` and
``ringfence_operation`` (and, for a rollback, ``ringfence_restore_points``: each host's restore point).
Each host's outcome in the run's events becomes that asset's :class:`~ringfence.core.driver.OperationResult`;
health comes from a health-check playbook. docs/ansible.md shows how a team wires its playbooks in.

Options (``--driver-option key=value``)

=====================  ==========================================================================
``inventory``          the Ansible inventory the playbooks run against (required)
``update_playbook``    installs the release (required)
``snapshot_playbook``  takes *and verifies* a restore point; a host it fails on is never updated
``rollback_playbook``  restores a host (from its restore point when there is one)
``health_playbook``    checks a host's health: a failed task is a failed service check, an
                       unreachable host a lost heartbeat
``artifacts_dir``      where runs keep their artifacts and the ledger (default
                       ``$RINGFENCE_HOME/ansible``)
``timeout``            longest one run may take (default ``1h``, at most 7d); a run stopped then
                       fails its hosts
``forks``              Ansible's parallelism (default 10)
``extravars``          a JSON object of extra variables for every run
``health_interval``    longest a health reading is reused (default ``5m``, at most 1d)
=====================  ==========================================================================

Abilities
    Without ``snapshot_playbook`` the driver cannot take restore points, so it refuses an update with
    ``rollback: snapshot``; without ``rollback_playbook`` it cannot roll back, so it refuses any update
    that may roll back (``snapshot`` or ``reinstall``). It says so in :meth:`AnsibleDriver.refuses` once
    built, so ``rollout start`` stops with the sentence (exit 2) before the rollout moves.

Hosts and assets
    An asset is the inventory host whose name, sanitized as ``ringfence import ansible`` does it
    (:func:`~ringfence.files.importers.ansible.asset_id_for_host`), is the asset's id; the inventory is read once,
    with ``ansible-inventory``, when the driver is built. An asset no host matches fails with a sentence.

Runs outlive the controller
    A run is a detached process (``ansible_runner.run`` in its own session), so ``start`` returns at
    once and a controller killed mid-play does not kill the play. Its directory
    ``ARTIFACTS/<rollout>/<operation>-<NN>/`` holds ansible-runner's artifacts (``stdout``,
    ``job_events/``, ``status``, ``rc``) and the run's outcome (``ringfence-outcome.json``), written when
    the run ends. ``poll`` reads that outcome; a run whose process is gone without one was interrupted,
    and its hosts fail ("may be part-way through the playbook"), because nobody knows how far it got.

What ``poll`` never waits past
    ansible-runner stops a run at ``timeout``. A run still alive ``STOP_GRACE_SECONDS`` after that is
    stopped by ringfence (SIGTERM to its session); one still alive ``STOP_GRACE_SECONDS`` after that is
    killed (SIGKILL) and its hosts fail at once with the reason. So every host's operation is final at the
    latest ``timeout`` + 2 × ``STOP_GRACE_SECONDS`` after its run started, whatever the play does.

Idempotent
    ``ARTIFACTS/<rollout>/ledger.json`` (written atomically) remembers each (operation, asset) of the
    rollout: its run and, once known, its result. An operation an asset already had in this rollout is
    never started again; its result is reported as before.

Results
    A host the run's recap shows processed with no failed task and reachable → succeeded; a failed task
    → failed, naming the task and Ansible's message; unreachable → failed; not in the recap (the play
    did not target it, or ansible-playbook stopped early) → failed, with ansible's error line; a run
    that timed out or was cancelled → failed for every host that had not already failed. Every detail
    ends with the run's artifacts directory, so it lands in the rollout's records. Nothing here raises
    for what happens on hosts; only a missing ability does (:class:`~ringfence.core.errors.DriverError`).

Health (:meth:`AnsibleDriver.observe`)
    The health playbook runs, synchronously, on every asked host at the first call and whenever
    ``health_interval`` has passed since the last such run, and in between on the asked hosts whose
    install or rollback ended after their last reading began. A reading taken before a host's latest
    install or rollback ended is never reported; hosts with an operation in flight are left out
    (unknown), as are hosts the run said nothing about.

Environment of every run
    The environment of the process, plus: the interpreter's ``bin`` directory first on ``PATH`` (so
    ``ansible-playbook`` of the same installation is found), ``ANSIBLE_HOME`` and ``ANSIBLE_LOCAL_TEMP``
    inside the artifacts directory (the collection and role paths keep the user's defaults), no host key
    checking, no retry files, no colour, and no password prompts. The working directory is the
    playbook's, so an ``ansible.cfg`` beside the playbooks applies as it does when the team runs them.
"""

from ringfence.drivers.ansible.driver import (
    HEALTH_DIR,
    HEALTH_RUNS_KEPT,
    STOP_GRACE_SECONDS,
    AnsibleDriver,
    AnsibleHealth,
)
from ringfence.drivers.ansible.events import HostOutcome, HostOutcomeKind, RunOutcome, read_run_outcome
from ringfence.drivers.ansible.ledger import LEDGER_FILE, Ledger, LedgerOperation, LedgerRun
from ringfence.drivers.ansible.options import (
    MAX_HEALTH_INTERVAL_SECONDS,
    MAX_TIMEOUT_SECONDS,
    NO_ROLLBACK_PLAYBOOK,
    NO_SNAPSHOT_PLAYBOOK,
    OPTIONS,
)
from ringfence.drivers.ansible.process import CHILD_LOG, OUTCOME_FILE, PID_FILE, SPEC_FILE

__all__ = [
    "CHILD_LOG",
    "HEALTH_DIR",
    "HEALTH_RUNS_KEPT",
    "LEDGER_FILE",
    "MAX_HEALTH_INTERVAL_SECONDS",
    "MAX_TIMEOUT_SECONDS",
    "NO_ROLLBACK_PLAYBOOK",
    "NO_SNAPSHOT_PLAYBOOK",
    "OPTIONS",
    "OUTCOME_FILE",
    "PID_FILE",
    "SPEC_FILE",
    "STOP_GRACE_SECONDS",
    "AnsibleDriver",
    "AnsibleHealth",
    "HostOutcome",
    "HostOutcomeKind",
    "Ledger",
    "LedgerOperation",
    "LedgerRun",
    "RunOutcome",
    "read_run_outcome",
]
