"""replica/sim"""
