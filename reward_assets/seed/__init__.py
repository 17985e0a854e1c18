"""The synthetic data generator (scripts and tests only; the product never imports it).

It draws a latent truth per customer (category tastes, preferred email hour, activity,
engagement, churn date) and per reward (popularity), simulates a window of time from it
(purchases and refunds, marketing emails and their events, redemptions), and lands the rows
as the daily files of the input contract with a known share of rows that break the
contract. Everything it planted goes to ``_truth/`` so that models and data checks can be
tested against it.

All work is vectorised over customers and rows; Python loops only run over files, tiers,
categories and id widths. Times are int64 seconds since the Unix epoch (UTC) throughout.
"""
