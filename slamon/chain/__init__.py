"""On-chain side of slamon: contract artefacts and EIP-712 signed reports (pure, no network)."""

from slamon.chain.artefacts import Artefact, erc20_test_token, load_artefact, sla_compensation
from slamon.chain.eip712 import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    PPM,
    REPORT_TYPE,
    InvalidSignature,
    Report,
    SignedReport,
    domain_separator,
    recover_signer,
    report_digest,
    sign_report,
    typed_data,
)

__all__ = [
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "PPM",
    "REPORT_TYPE",
    "Artefact",
    "InvalidSignature",
    "Report",
    "SignedReport",
    "domain_separator",
    "erc20_test_token",
    "load_artefact",
    "recover_signer",
    "report_digest",
    "sign_report",
    "sla_compensation",
    "typed_data",
]
