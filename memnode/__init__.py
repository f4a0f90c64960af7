"""memnode"""
