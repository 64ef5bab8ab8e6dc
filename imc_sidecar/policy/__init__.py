"""Request policy, pure: what the sidecar does with each MESSAGE (requests.py) and the
overload admission it applies (admission.py)."""

from .admission import RETRY_AFTER, Admission, AdmissionReport
from .requests import Decision, Lifecycle, RequestPolicy

__all__ = ["RETRY_AFTER", "Admission", "AdmissionReport", "Decision", "Lifecycle", "RequestPolicy"]
