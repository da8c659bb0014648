"""Switch targets the kit can drive over P4Runtime (`embedded` ships with the kit)."""
