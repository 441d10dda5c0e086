"""The job store: the only code that knows a job record's layout.

- :mod:`.values` checks every value where it enters a record (submission, and what
  executors return), so nothing unstorable reaches a commit; :mod:`.door` checks a whole
  submission with them and the executor's ``validate_params``;
- :mod:`.records` is the record's schema and codec;
- :mod:`.verbs` are the state changes (create, dispatch, finish, cancel, recover, admit,
  prune), each inside one write transaction;
- :mod:`._lmdb` is the embedded LMDB backend: the shared environment and the write
  transaction with its indexes (:class:`StoreTxn`);
- :mod:`.jobstore` is :class:`JobStore`, reads and submission for any process.
"""

from ._lmdb import StoreTxn as StoreTxn
from .door import NewJob as NewJob
from .door import prepare_checked as prepare_checked
from .door import prepare_job as prepare_job
from .door import validates_params as validates_params
from .jobstore import NOT_CANCELLABLE as NOT_CANCELLABLE
from .jobstore import JobStore as JobStore
from .records import ACTIVE_CODES as ACTIVE_CODES
from .records import SCHEMA_VERSION as SCHEMA_VERSION
from .records import STATUS_OF as STATUS_OF
from .records import decode_record as decode_record
from .records import new_record as new_record
from .records import now_us as now_us
from .records import record_to_job as record_to_job
from .values import check_decision as check_decision
from .values import check_idempotency_key as check_idempotency_key
from .values import check_max_retries as check_max_retries
from .values import check_progress as check_progress
from .values import check_timeout as check_timeout
from .values import params_text as params_text
from .values import parse_params as parse_params

__all__ = [
    "ACTIVE_CODES",
    "NOT_CANCELLABLE",
    "SCHEMA_VERSION",
    "STATUS_OF",
    "JobStore",
    "NewJob",
    "StoreTxn",
    "check_decision",
    "check_idempotency_key",
    "check_max_retries",
    "check_progress",
    "check_timeout",
    "decode_record",
    "new_record",
    "now_us",
    "params_text",
    "parse_params",
    "prepare_checked",
    "prepare_job",
    "record_to_job",
    "validates_params",
]
