"""`p4cf doctor`: checks that this machine can run the kit, each with its fix.

`checks` holds one function per check against the real machine (a module per subject),
`report` renders the results as text or JSON.
"""

from p4cf_kit.doctor.checks import CheckResult, all_checks, all_required_ok, run_checks

__all__ = ["CheckResult", "all_checks", "all_required_ok", "run_checks"]
