"""Operations: health, admission, draining."""
