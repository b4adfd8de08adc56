"""ustack.udp"""
