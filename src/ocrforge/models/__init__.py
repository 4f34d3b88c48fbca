"""Shared building blocks: backbones (timm adapters), necks, heads."""
