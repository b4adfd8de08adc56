"""ustack.tcp"""
