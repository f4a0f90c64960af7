"""replica/core"""
