"""ustack.api"""
