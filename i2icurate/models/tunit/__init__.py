"""models/tunit"""
