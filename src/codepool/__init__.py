"""codepool: hands out pre-generated voucher codes from Redis pools, exactly once."""

__version__ = "0.1.0"
