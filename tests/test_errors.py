from forge import errors


def test_every_error_class_has_its_own_exit_code():
    classes = errors.all_error_classes()
    codes = [c.exit_code for c in classes]
    assert len(classes) > 20
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(2 < c < 126 for c in codes)  # 0/1/2 are success/generic/usage; >=126 are the shell's
