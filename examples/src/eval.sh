#!/bin/sh
echo "evaluating"
