"""ustack.net"""
