"""ustack.apps"""
