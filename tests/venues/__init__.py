"""Every connector against its fake venue (wire protocol and faults on loopback) and its real captures."""
